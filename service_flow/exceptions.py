"""Every error service_flow raises, under one base class.

The tree::

    FlowError                       base of everything the library raises
    ├── StopFlow                    stop processing this input (not a failure)
    ├── Retry                       process this input again, optionally after `delay`
    ├── Fatal                       the processor must restart
    │   └── ForkError               a fork got a value it has no branch for
    ├── MissingContextKey           a step needs a key the context does not have
    ├── ValidationError             `Flow.validate` found problems (lists them all)
    ├── FlowDefinitionError         a flow was put together wrongly (also a TypeError)
    ├── InvalidInput                an input that is not a mapping, or a value a service refuses
    ├── RemoteError                 an error from another process that could not travel as itself
    └── ConfigurationError          an option got a value it cannot take (also a ValueError)

`StopFlow`, `Retry` and `Fatal` are raised by *your* services to steer the loop that
feeds inputs through a flow; the others are raised by the library.  When an error
leaves a flow, its ``flow`` and ``step`` attributes name where it happened and its
message says so.

The names of the original service-flow stay importable: `StopFlowException`,
`RetryException`, `FatalException` and `ForkException` are the same classes as
`StopFlow`, `Retry`, `Fatal` and `ForkError`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "ConfigurationError",
    "Fatal",
    "FatalException",
    "FlowDefinitionError",
    "FlowError",
    "ForkError",
    "ForkException",
    "InvalidInput",
    "MissingContextKey",
    "RemoteError",
    "Retry",
    "RetryException",
    "StopFlow",
    "StopFlowException",
    "ValidationError",
]


def _rebuild(cls: type[FlowError], args: tuple[Any, ...], state: dict[str, Any]) -> FlowError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class FlowError(Exception):
    """Base class of every exception service_flow raises.

    ``flow`` and ``step`` name the flow and the step the error came from once it has
    left a flow (``None`` before that); ``str(error)`` includes them.
    """

    flow: str | None
    step: str | None

    def __init__(self, *args: object, flow: str | None = None, step: str | None = None) -> None:
        # Like any exception (and the original service-flow's), take any arguments:
        # `RetryException(error)`, `StopFlow("reason", order_id)`.
        super().__init__(*args)
        self.message = "" if not args else str(args[0]) if len(args) == 1 else str(args)
        self.flow = flow
        self.step = step

    def __str__(self) -> str:
        # A part the message already names ("flow 'checkout' takes a mapping...") is not repeated.
        where = [
            part
            for part in (
                None if self.step is None else f"step {self.step!r}",
                None if self.flow is None else f"flow {self.flow!r}",
            )
            if part is not None and part not in self.message
        ]
        if not where:
            return self.message
        location = ", ".join(where)
        return f"{self.message} [{location}]" if self.message else f"[{location}]"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments defeat the default pickling of exceptions;
        # errors must cross process boundaries (process pools, Dask, Celery) intact.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class StopFlow(FlowError):
    """Stop processing this input: the remaining steps are skipped.

    Not a failure: ``flow.run()`` reports a *stopped* run and a driver moves on to the
    next input without retrying.  ``reason`` says why.

    >>> raise StopFlow("order 7 was already shipped")
    Traceback (most recent call last):
    ...
    service_flow.exceptions.StopFlow: order 7 was already shipped
    """

    @property
    def reason(self) -> str:
        """Why the flow stopped (the message it was raised with)."""
        return self.message


class Retry(FlowError):
    """Process this same input again, from the start, after a delay.

    ``delay`` (seconds) overrides the delay the retry policy would compute, up to the
    policy's ``ceiling``; ``None`` leaves the choice to the policy.  A delay that is not
    a finite number of seconds, zero or more (NaN, infinity, a string) is refused with a
    `ConfigurationError` naming it.
    """

    def __init__(
        self,
        *args: object,
        delay: float | None = None,
        flow: str | None = None,
        step: str | None = None,
    ) -> None:
        given: object = delay  # what a caller passes is checked, whatever the annotation says
        if given is not None and (
            isinstance(given, bool) or not isinstance(given, (int, float)) or not 0 <= given < math.inf
        ):
            # Refused here, where the bad value is made; raised by a service, this error
            # makes the input a dead letter naming it (never a stuck or crashed runner).
            msg = f"Retry delay must be a finite number, zero or more seconds, got {delay!r}"
            raise ConfigurationError(msg)
        super().__init__(*args, flow=flow, step=step)
        self.delay = delay


class Fatal(FlowError):
    """The processor is broken (a lost connection, a bad credential) and must restart.

    A driver tears down and sets up the services' resources, then processes the same
    input again.
    """


class ForkError(Fatal):
    """A fork got a context value for which it has no branch and no default."""

    def __init__(
        self,
        *args: object,
        key: str | None = None,
        value: object = None,
        known: Sequence[object] = (),
        flow: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(*args, flow=flow, step=step)
        self.key = key
        self.value = value
        self.known = tuple(known)

    def redacted(self) -> str:
        """The message without the unknown value (a context value), for logs."""
        from service_flow._text import short_repr  # _text imports this module

        known = ", ".join(short_repr(v, 40) for v in self.known[:10])
        kind = type(self.value).__name__
        return f"the fork on {self.key!r} has no branch for a value of type {kind}; known values: {known}"


class MissingContextKey(FlowError):
    """A step needs a context key that is not there.

    ``key`` is the missing key, ``service`` the step that needed it and ``available``
    the keys the context did have.
    """

    def __init__(
        self,
        *args: object,
        key: str | None = None,
        service: str | None = None,
        available: Iterable[str] = (),
        flow: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(*args, flow=flow, step=step)
        self.key = key
        self.service = service
        self.available = tuple(available)


class ValidationError(FlowError):
    """`Flow.validate` found problems; ``problems`` lists every one of them."""

    def __init__(
        self,
        *args: object,
        problems: Sequence[str] = (),
        flow: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(*args, flow=flow, step=step)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        return self.message  # it opens with the flow's name and lists each step


class FlowDefinitionError(FlowError, TypeError):
    """A flow was put together wrongly: a non-callable step, a malformed fork...

    Also a `TypeError`, which is what Python raises for a misused operator.
    """


class InvalidInput(FlowError):
    """An input that is not what it must be.

    A flow or a driver given an input that is not a mapping: ``flow.run()`` and
    ``flow.arun()`` give a failed run with this error, ``flow(context)`` raises it, a driver
    makes the input a dead letter.  Also raised by `Driver.run`, ``iter`` and ``arun`` when
    what they are given is not a stream of inputs (``None``, a number, one mapping).  Your
    own services may raise it for a value they refuse, naming the field with ``key``:
    ``raise InvalidInput("quantity must be at least 1", key="quantity")``.
    """

    def __init__(self, *args: object, key: str | None = None, flow: str | None = None, step: str | None = None) -> None:
        super().__init__(*args, flow=flow, step=step)
        self.key = key


class RemoteError(FlowError):
    """An error raised in another process that could not be pickled back as itself.

    ``error_type`` is the dotted name of the original exception's class; the message
    is its text.
    """

    def __init__(self, *args: object, error_type: str = "", flow: str | None = None, step: str | None = None) -> None:
        super().__init__(*args, flow=flow, step=step)
        self.error_type = error_type


class ConfigurationError(FlowError, ValueError):
    """An option was given a value it cannot take (a negative delay, zero attempts...).

    Also a `ValueError`, which is what Python raises for a bad argument value.
    """


# The names of the original service-flow, kept so code written for it runs unchanged.
StopFlowException = StopFlow
RetryException = Retry
FatalException = Fatal
ForkException = ForkError
