"""`Recorder`: a fake service that keeps what it was called with."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from service_flow._plan import CURRENT_APP
from service_flow._spec import CALL_NEXT_PARAM
from service_flow._text import short_repr

if TYPE_CHECKING:
    from collections.abc import Callable

    from service_flow._spec import Spec

__all__ = ["Recorder"]

_MAX_SHOWN_CALLS = 5


def _shown(name: str, value: Any) -> str:
    from service_flow.http._redact import MASK, is_sensitive_field  # only to explain a failure

    return f"{name}={MASK if is_sensitive_field(name) else short_repr(value, 80)}"


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    return f"({', '.join(_shown(name, value) for name, value in kwargs.items())})"


class _Binding:
    """How a recorder standing in for one service reads the arguments the plan passes it."""

    __slots__ = ("around", "positional", "recorder", "whole")

    def __init__(self, recorder: Recorder, spec: Spec) -> None:
        self.recorder = recorder
        self.positional = [arg.name for arg in spec.args if not arg.keyword]
        self.whole = spec.whole_context
        self.around = spec.around

    def received(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """(the rest of the flow to run, or ``None``; the keyword arguments to record)."""
        then = None
        if self.around == CALL_NEXT_PARAM:
            then = kwargs.pop(CALL_NEXT_PARAM)  # not something the service was given
        elif self.around is not None:  # a DecoratorMiddleware: the plan handed the rest over
            current = CURRENT_APP.get()
            then = current[1] if current is not None and current[0] is self.recorder else None
        if self.whole:
            context = args[0] if args else kwargs["context"]
            return then, {"context": dict(context)}  # a copy: the context changes afterwards
        got = dict(zip(self.positional, args))
        got.update(kwargs)
        return then, got


class Recorder:
    """A fake service that records every call: what it was given, and how often.

    ``returns`` is what each call returns: a mapping (a fresh copy each time), ``None``,
    or a callable computing it from the call's keyword arguments.  Put in a flow by
    `stub`, a recorder takes exactly the parameters the service it replaces would (an
    around service's rest of the flow runs, as if it were transparent); put in a flow
    directly, it takes the whole context as keyword arguments.

    >>> charge = Recorder(returns={"charge_id": "ch_1"})
    >>> charge(total=12, card="visa")
    {'charge_id': 'ch_1'}
    >>> charge.calls
    [{'total': 12, 'card': 'visa'}]
    >>> charge.assert_called_once()
    """

    def __init__(self, returns: Mapping[str, Any] | Callable[..., Any] | None = None) -> None:
        self.returns = returns
        self.calls: list[dict[str, Any]] = []
        """The keyword arguments of each call, in order (a whole context is a shallow copy)."""
        self._steps: dict[str, None] = {}  # the steps it stands in for, in the order stubbed

    @property
    def call_count(self) -> int:
        """How many times it was called."""
        return len(self.calls)

    def __call__(self, **kwargs: Any) -> Any:
        """Record a call with *kwargs* and return what ``returns`` says."""
        self.calls.append(kwargs)
        return self._result(kwargs)

    def _result(self, kwargs: dict[str, Any]) -> Any:
        returns = self.returns
        if callable(returns) and not isinstance(returns, Mapping):
            returns = returns(**kwargs)
        return dict(returns) if isinstance(returns, Mapping) else returns

    # -- standing in for a service --------------------------------------------------

    def _bind(self, spec: Spec) -> Spec:
        """The spec of this recorder taking what the service of *spec* takes (see `stub`)."""
        self._steps.setdefault(spec.name)
        binding = _Binding(self, spec)
        if spec.is_async:

            async def call_async(*args: Any, **kwargs: Any) -> Any:
                then, got = binding.received(args, kwargs)
                self.calls.append(got)
                if then is not None:
                    await then()
                result = self._result(got)
                return (await result) if inspect.isawaitable(result) else result

            call: Callable[..., Any] = call_async
        else:

            def call_sync(*args: Any, **kwargs: Any) -> Any:
                then, got = binding.received(args, kwargs)
                self.calls.append(got)
                if then is not None:
                    then()
                return self._result(got)

            call = call_sync
        return dataclasses.replace(spec, service=self, call=call)

    # -- assertions -----------------------------------------------------------------

    def _label(self) -> str:
        if not self._steps:
            return "the recorder"
        names = ", ".join(repr(name) for name in self._steps)
        return f"the recorder of step{'s' if len(self._steps) > 1 else ''} {names}"

    def _history(self) -> str:
        shown = [f"  {number}. {_kwargs_text(call)}" for number, call in enumerate(self.calls[-_MAX_SHOWN_CALLS:], 1)]
        skipped = len(self.calls) - len(shown)
        head = f"  (the {skipped} calls before are not shown)\n" if skipped else ""
        return head + "\n".join(shown)

    def assert_called_with(self, **expected: Any) -> None:
        """Check that the last call was given exactly *expected* (as ``unittest.mock`` does)."""
        if not self.calls:
            msg = f"{self._label()} was never called; expected a call with {_kwargs_text(expected)}"
            raise AssertionError(msg)
        last = self.calls[-1]
        if last == expected:
            return
        differences = []
        for name, value in expected.items():
            if name not in last:
                differences.append(f"{name!r} was not given")
            elif last[name] != value:
                differences.append(f"{_shown(name, last[name])} instead of {_shown(name, value)}")
        differences.extend(f"{_shown(name, last[name])} was given too" for name in last if name not in expected)
        msg = (
            f"{self._label()} was last called with {_kwargs_text(last)}, expected {_kwargs_text(expected)}: "
            + "; ".join(differences)
        )
        raise AssertionError(msg)

    def assert_called_once(self) -> None:
        """Check that it was called exactly once."""
        if self.call_count != 1:
            calls = f"; its calls:\n{self._history()}" if self.calls else ""
            msg = f"{self._label()} was called {self.call_count} times, expected once{calls}"
            raise AssertionError(msg)

    def assert_not_called(self) -> None:
        """Check that it was never called."""
        if self.calls:
            msg = f"{self._label()} was called {self.call_count} times, expected never; its calls:\n{self._history()}"
            raise AssertionError(msg)

    def __repr__(self) -> str:
        steps = f" of {', '.join(self._steps)}" if self._steps else ""
        return f"<Recorder{steps}: {self.call_count} calls>"
