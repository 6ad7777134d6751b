"""Introspection of a service, done once when it joins a flow.

`spec_of` turns any callable into a `Spec`: the name a user will read in errors and
logs, the context keys its parameters ask for, how to pass them, whether it is async,
what it declares it provides.  The plan compiler reads specs; nothing here runs per call.
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Final

from service_flow._text import check_name, short_repr
from service_flow.exceptions import FlowDefinitionError

#: The parameter name that receives the whole context when it is a service's only one.
CONTEXT_PARAM: Final = "context"
#: The parameter through which an around service receives the rest of the flow.
CALL_NEXT_PARAM: Final = "call_next"

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class Arg:
    """One parameter filled from the context."""

    name: str
    required: bool
    default: Any
    keyword: bool  # passed as ``name=value`` rather than positionally


@dataclass(frozen=True, eq=False)
class Spec:
    """What the plan compiler needs to know about one service."""

    service: Any  # the callable the user put in the flow
    call: Callable[..., Any]  # what the plan calls (a bound ``__call__``, the raw function...)
    name: str
    args: tuple[Arg, ...]  # in call order; empty when whole_context
    whole_context: bool  # the only parameter is ``context``: pass the context itself
    whole_context_keyword: bool  # ... and it is keyword-only
    var_keyword: bool  # has ``**kwargs``: keyword args go through ``**context``
    is_async: bool
    blocking: bool  # a sync service to run in a thread inside async runs
    provides: frozenset[str] | None  # None: the service does not say
    around: str | None  # None, "call_next" (modern) or "app" (DecoratorMiddleware)
    declared_requires: tuple[str, ...] = ()  # ``requires`` of a service reading the whole context

    def __reduce__(self) -> tuple[Any, ...]:
        # What the plan calls may be a function hidden behind a decorator (not picklable
        # by name): send the service and introspect it again on arrival.
        return (spec_of, (self.service,))

    @property
    def requires(self) -> tuple[str, ...]:
        """Context keys that must be present.

        A service that takes the whole ``context`` (or ``**kwargs``) may say which keys it
        reads in a ``requires`` attribute, as it says what it sets in ``provides``.
        """
        return tuple(a.name for a in self.args if a.required) + self.declared_requires

    @property
    def optional(self) -> tuple[str, ...]:
        """Context keys that are read when present."""
        return tuple(a.name for a in self.args if not a.required)


def service_name(obj: object) -> str:
    """The name a user recognises a service by, for errors, logs and diagrams."""
    return check_name(_service_name(obj), f"the name of service {type(obj).__name__}")


def _service_name(obj: object) -> str:  # noqa: PLR0911 - one return per kind of callable
    # Services and flows say their name; an arbitrary object's `name` attribute may
    # mean anything (a warehouse's city), so it is not asked.
    explicit = getattr(obj, "__service_flow_name__", None)
    if explicit is not None and not isinstance(explicit, str):
        # A name given as bytes or a number is a mistake to report, not to ignore.
        check_name(explicit, f"the name of service {type(obj).__name__}")
    if explicit:
        return check_name(explicit, f"the name of service {type(obj).__name__}")  # before str() hides it
    if isinstance(obj, functools.partial):
        return f"partial({service_name(obj.func)})"
    if inspect.ismethod(obj):
        return str(obj.__qualname__).rpartition("<locals>.")[2]
    if inspect.isfunction(obj):
        if obj.__name__ == "<lambda>":
            code = obj.__code__
            return f"<lambda at {PurePath(code.co_filename).name}:{code.co_firstlineno}>"
        # A function defined inside another is known by its own name, not its path.
        return str(obj.__qualname__).rpartition("<locals>.")[2]
    if inspect.isroutine(obj) or inspect.isclass(obj):
        return str(getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj))))
    return type(obj).__name__


def _declared_keys(obj: object, name: str, attribute: str) -> tuple[str, ...] | None:
    declared = getattr(obj, attribute, None)
    if declared is None:
        return None
    if isinstance(declared, str):
        declared = (declared,)
    if isinstance(declared, Iterable):
        keys = tuple(declared)
        if all(isinstance(k, str) for k in keys):
            return tuple(check_name(k, f"a key in {name}.{attribute}") for k in keys)
    msg = f"{name}.{attribute} must be a key or a tuple of keys (strings), got {short_repr(declared)}"
    raise FlowDefinitionError(msg)


def _check_parameter(param: inspect.Parameter, name: str) -> None:
    # Parameter names are written into the plan's source (``name=value``, ``ctx['name']``):
    # a signature made up by hand may hold anything, so only plain identifiers pass.
    text = param.name
    if type(text) is not str or not text.isidentifier() or keyword.iskeyword(text):
        msg = f"service {name} has a parameter whose name is not a plain identifier: {short_repr(text)}"
        raise FlowDefinitionError(msg)


def _declared_provides(obj: object, name: str) -> frozenset[str] | None:
    keys = _declared_keys(obj, name, "provides")
    return None if keys is None else frozenset(keys)


def is_async_callable(obj: object) -> bool:
    """Whether calling *obj* gives a coroutine: an ``async def``, or an object with one as ``__call__``."""
    if inspect.iscoroutinefunction(obj):
        return True
    if inspect.isroutine(obj) or inspect.isclass(obj) or isinstance(obj, functools.partial):
        return False  # iscoroutinefunction has answered for these
    wrapped = getattr(obj, "__service_flow_func__", None)
    if wrapped is not None:
        return is_async_callable(wrapped)
    method = getattr(type(obj), "__call__", None)  # noqa: B004 - the method itself, not callability
    return inspect.iscoroutinefunction(method)


def _callable_to_run(obj: Any) -> Callable[..., Any]:
    # Calling a bound method object is cheaper than calling an instance, which looks
    # up __call__ on every call; bind once here.
    if inspect.isroutine(obj) or isinstance(obj, functools.partial) or inspect.isclass(obj):
        return obj
    wrapped = getattr(obj, "__service_flow_func__", None)
    if wrapped is not None:
        return wrapped  # type: ignore[no-any-return]
    bound: Callable[..., Any] = obj.__call__
    return bound


def _by_keyword(param: inspect.Parameter, *, var_keyword: bool, after_call_next: bool) -> bool:
    if param.kind is inspect.Parameter.POSITIONAL_ONLY:
        return False
    # With **kwargs the context goes in as keywords: only what cannot be passed by
    # keyword goes positionally.
    return var_keyword or after_call_next or param.kind not in _POSITIONAL


def _is_service_class(obj: object) -> bool:
    # On a Service (or Flow) class, the name is a property not yet bound to an instance.
    return inspect.isclass(obj) and isinstance(inspect.getattr_static(obj, "__service_flow_name__", None), property)


def spec_of(obj: object) -> Spec:
    """Introspect *obj* once; raise `FlowDefinitionError` when it cannot be a service."""
    if not callable(obj):
        msg = f"a flow step must be callable (a service, function or flow), got {short_repr(obj)}"
        raise FlowDefinitionError(msg)
    if _is_service_class(obj):
        cls = getattr(obj, "__name__", repr(obj))
        msg = f"{cls} is a service class: put an instance in the flow, `{cls}(...)`"
        raise FlowDefinitionError(msg)
    name = service_name(obj)
    call = _callable_to_run(obj)
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError) as error:
        msg = (
            f"cannot read the parameters of service {name}: {error}; "
            "wrap it in a function whose parameters name the context keys it needs"
        )
        raise FlowDefinitionError(msg) from error

    for param in signature.parameters.values():
        _check_parameter(param, name)
    around = getattr(obj, "__service_flow_around__", None)
    params = [
        p
        for p in signature.parameters.values()
        if p.kind is not inspect.Parameter.VAR_POSITIONAL
        and not (around == CALL_NEXT_PARAM and p.name == CALL_NEXT_PARAM)
    ]
    if around == CALL_NEXT_PARAM and CALL_NEXT_PARAM not in signature.parameters:
        msg = f"around service {name} must take a `{CALL_NEXT_PARAM}` parameter (the rest of the flow)"
        raise FlowDefinitionError(msg)
    if around == CALL_NEXT_PARAM and signature.parameters[CALL_NEXT_PARAM].kind is inspect.Parameter.POSITIONAL_ONLY:
        msg = f"around service {name} must take `{CALL_NEXT_PARAM}` by keyword: it is positional-only (before a `/`)"
        raise FlowDefinitionError(msg)

    if isinstance(obj, functools.partial):
        # Arguments bound by the partial are configuration: the context must not replace them.
        params = [p for p in params if p.name not in obj.keywords]
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    whole_context = not var_keyword and len(named) == 1 and named[0].name == CONTEXT_PARAM
    # call_next is passed by keyword, so the parameters after it must be too.
    names = list(signature.parameters)
    after = names.index(CALL_NEXT_PARAM) if around == CALL_NEXT_PARAM else len(names)
    args = tuple(
        Arg(
            p.name,
            required=p.default is inspect.Parameter.empty,
            default=p.default,
            keyword=_by_keyword(p, var_keyword=var_keyword, after_call_next=names.index(p.name) > after),
        )
        for p in named
    )
    return Spec(
        service=obj,
        call=call,
        name=name,
        args=() if whole_context else args,
        whole_context=whole_context,
        whole_context_keyword=whole_context and args[0].keyword,
        var_keyword=var_keyword,
        is_async=is_async_callable(obj) or is_async_callable(call),
        blocking=bool(getattr(obj, "blocking", False)),
        provides=_declared_provides(obj, name),
        around=around,
        declared_requires=(_declared_keys(obj, name, "requires") or ()) if whole_context or var_keyword else (),
    )
