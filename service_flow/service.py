"""Services: the small, single-purpose callables a flow is made of.

Any callable is a service: a `Service` subclass, a function, a lambda, a bound method,
an ``async def``, a `functools.partial`.  Its parameters are filled *by name* from the
context; the mapping it returns is merged back into the context.

`Service` adds the ``>>`` and ``<`` operators and room for declarations (``provides``,
``blocking``); the `service` decorator gives the same to a function.  An *around*
service (`Around`, `around`) wraps the rest of the flow: a transaction, a timer, an
exception handler.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from service_flow._spec import CALL_NEXT_PARAM

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from service_flow.flow import Flow

__all__ = ["Around", "AsyncCallNext", "CallNext", "FunctionService", "Service", "around", "service"]

P = ParamSpec("P")
R = TypeVar("R")


class CallNext(Protocol):
    """The rest of the flow, as handed to a synchronous around service.

    Call it with no argument to run the rest on the current context, or with a mapping
    to run it on that one; it returns the context the rest of the flow left.
    """

    def __call__(self, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the rest of the flow on *context* (default: the current one); return it."""


class AsyncCallNext(Protocol):
    """The rest of the flow, as handed to an ``async`` around service (await it)."""

    def __call__(self, context: Mapping[str, Any] | None = None) -> Awaitable[dict[str, Any]]:
        """Run the rest of the flow on *context* (default: the current one); await it."""


class Service:
    """Base class for service objects.

    Configure a service once through its constructor; define ``__call__`` with the
    context keys it needs as parameters, and return a mapping of the keys it sets::

        class AddTax(Service):
            provides = ("total",)

            def __init__(self, rate: float) -> None:
                self.rate = rate

            def __call__(self, subtotal: float) -> dict[str, float]:
                return {"total": subtotal * (1 + self.rate)}

    Class attributes a subclass may set:

    ``name``
        how errors, logs and diagrams call it (default: the class name);
    ``provides``
        the keys it writes, for `Flow.validate` and diagrams (default: not declared);
    ``blocking``
        a synchronous service that blocks (I/O): async runs call it in a thread.
    """

    name: ClassVar[str | None] = None
    provides: ClassVar[tuple[str, ...] | str | None] = None
    blocking: ClassVar[bool] = False

    if TYPE_CHECKING:
        # Every concrete service defines __call__ with its own parameters.
        __call__: Callable[..., Any]

    def __rshift__(self, other: Callable[..., Any]) -> Flow:
        from service_flow.flow import Flow  # flow imports this module

        return Flow(self) >> other

    def __rrshift__(self, other: Callable[..., Any]) -> Flow:
        from service_flow.flow import Flow

        return Flow._from_left_operand(other) >> self

    def __lt__(self, fork: tuple[str, Mapping[Any, Any]]) -> Flow:
        from service_flow.flow import Flow

        return Flow(self) < fork

    @property
    def __service_flow_name__(self) -> str:
        """The name errors, logs and records use: ``name``, or the class name."""
        return self.name or type(self).__name__

    @property
    def is_async(self) -> bool:
        """Whether ``__call__`` is a coroutine function (kept from the original API)."""
        return inspect.iscoroutinefunction(type(self).__call__)


class FunctionService(Service, Generic[P, R]):
    """A function made into a `Service` by `service` or `around`.

    Calling it calls the function; in a flow the plan calls the function directly, so
    the wrapper costs nothing at run time.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        provides: Iterable[str] | str | None = None,
        blocking: bool = False,
        around: bool = False,
    ) -> None:
        functools.update_wrapper(self, func)
        self.__service_flow_func__ = func
        self.func = func
        # Instance attributes shadow the ClassVar defaults of Service on purpose.
        self.name = name or _function_name(func)  # type: ignore[misc]
        self.provides = (  # type: ignore[misc]
            (provides,) if isinstance(provides, str) else None if provides is None else tuple(provides)
        )
        self.blocking = blocking  # type: ignore[misc]
        if around:
            self.__service_flow_around__ = CALL_NEXT_PARAM

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function."""
        return self.func(*args, **kwargs)

    def __reduce__(self) -> str | tuple[Any, ...]:
        # A decorated module-level function is found by its name, like the function was.
        qualname: str = getattr(self, "__qualname__", "<unknown>")  # set by update_wrapper
        if "<" not in qualname:
            return qualname
        return super().__reduce__()

    @property
    def is_async(self) -> bool:
        """Whether calling the wrapped callable gives a coroutine."""
        from service_flow._spec import is_async_callable

        return is_async_callable(self.func)

    def __repr__(self) -> str:
        return f"<service {self.name}>"


def _function_name(func: Callable[..., Any]) -> str:
    from service_flow._spec import service_name  # keep the import graph one-way

    return service_name(func)


@overload
def service(func: Callable[P, R], /) -> FunctionService[P, R]: ...
@overload
def service(
    *,
    name: str | None = None,
    provides: Iterable[str] | str | None = None,
    blocking: bool = False,
) -> Callable[[Callable[P, R]], FunctionService[P, R]]: ...
@overload
def service(
    func: Callable[P, R],
    /,
    *,
    name: str | None = None,
    provides: Iterable[str] | str | None = None,
    blocking: bool = False,
) -> FunctionService[P, R]: ...


def service(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    provides: Iterable[str] | str | None = None,
    blocking: bool = False,
) -> FunctionService[P, R] | Callable[[Callable[P, R]], FunctionService[P, R]]:
    """Make a function a `Service`: it gains ``>>``/``<`` and declarations.

    Use it bare (``@service``) or with options::

        @service(provides=("total",))
        def add_tax(subtotal: float) -> dict[str, float]:
            return {"total": subtotal * 1.2}

        flow = add_tax >> charge   # works: add_tax is now a Service

    ``blocking=True`` marks a synchronous function that blocks, so that async runs call
    it in a worker thread instead of stalling the event loop.  It can also wrap an
    existing function: ``service(requests_call, blocking=True)``.
    """

    def wrap(f: Callable[P, R]) -> FunctionService[P, R]:
        return FunctionService(f, name=name, provides=provides, blocking=blocking)

    return wrap if func is None else wrap(func)


class Around(Service):
    """Base class for a service that wraps the rest of the flow.

    Its ``__call__`` takes a ``call_next`` parameter (besides any context keys, or
    ``context`` for the whole context) and calls it to run the remaining steps::

        class Transaction(Around):
            def __init__(self, db): self.db = db

            def __call__(self, context, call_next):
                with self.db.begin():
                    return call_next()

    An around service placed in a chain wraps every step composed after it; a flow
    used as the right operand of ``>>`` keeps its around services to itself.  In an
    async flow, make ``__call__`` ``async`` and ``await call_next()``.  What it returns
    is merged into the context like any service's result.
    """

    __service_flow_around__: ClassVar[str] = CALL_NEXT_PARAM


@overload
def around(func: Callable[P, R], /) -> FunctionService[P, R]: ...
@overload
def around(
    *, name: str | None = None, provides: Iterable[str] | str | None = None
) -> Callable[[Callable[P, R]], FunctionService[P, R]]: ...


def around(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    provides: Iterable[str] | str | None = None,
) -> FunctionService[P, R] | Callable[[Callable[P, R]], FunctionService[P, R]]:
    """Make a function an around service (see `Around`).

    ::


    @around
    def timed(call_next):
        started = time.perf_counter()
        call_next()
        return {"elapsed": time.perf_counter() - started}
    """

    def wrap(f: Callable[P, R]) -> FunctionService[P, R]:
        return FunctionService(f, name=name, provides=provides, around=True)

    return wrap if func is None else wrap(func)
