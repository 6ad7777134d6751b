"""Answering an HTTP request from a run: a framework-neutral mapping of a `Run` to a response.

An endpoint runs its flow on the request's JSON body and turns the `Run` into an
`Answer` (status, JSON body, headers) that any framework can send::

    answers = Answers(keys=("order_id", "total"))

    @app.post("/orders")
    def create_order():
        status, body, headers = answers(checkout.run(request.get_json(silent=True)))
        return body, status, headers

========================================  ======  ===========================================
outcome of the run                        status  body
========================================  ======  ===========================================
succeeded                                 200     the chosen ``keys`` of the final context
stopped (`StopFlow`)                      409     ``{"error": "stopped", "reason": ...}``
`InvalidInput`, `MissingContextKey`,      422     ``{"error": "invalid input", "message":
`ValidationError`, `ForkError`                    ..., "field": ...}``
`Retry`                                   503     ``{"error": "unavailable"}`` and
                                                  ``Retry-After`` (whole seconds, capped)
anything else                             500     ``{"error": "internal error"}``, no details
========================================  ======  ===========================================

Every body but a success's carries the ``run_id``, to find the run's log lines. Each
status is an option, and ``errors`` maps your own exception types to a status or to a
function building the whole answer.

An `Answers` never raises for a run: what it cannot answer as asked (a chosen value JSON
cannot carry, an ``errors`` function that raises or returns something else) is answered
500 like any internal error, and logged as ``web.answer_failed`` naming the key or the
function at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Union

from service_flow import _log
from service_flow._text import short_repr
from service_flow.exceptions import (
    ConfigurationError,
    ForkError,
    InvalidInput,
    MissingContextKey,
    Retry,
    ValidationError,
)
from service_flow.run import Run

__all__ = ["Answer", "Answers", "answer"]


class Answer(NamedTuple):
    """What to send back: an HTTP status, a JSON-serialisable body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


ErrorAnswer = Union[int, Callable[[Run], Answer]]
"""How `Answers` answers one kind of error: a status, or a function of the run."""

_INVALID = (InvalidInput, MissingContextKey, ValidationError, ForkError)


def _status(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:  # noqa: PLR2004
        msg = f"Answers option {option} must be an HTTP status (an int from 100 to 599), got {short_repr(value)}"
        raise ConfigurationError(msg)
    return value


def _seconds(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        msg = f"Answers option {option} must be a finite number of seconds, zero or more, got {short_repr(value)}"
        raise ConfigurationError(msg)
    return math.ceil(value)


def _keys(keys: object) -> tuple[str, ...]:
    if isinstance(keys, str):
        return (keys,)
    if isinstance(keys, Mapping) or not isinstance(keys, Iterable):
        msg = f"Answers option keys must be context key names (a str or a sequence of them), got {short_repr(keys)}"
        raise ConfigurationError(msg)
    names = tuple(keys)
    for name in names:
        if not isinstance(name, str):
            msg = f"Answers option keys must hold only str key names, got {short_repr(name)}"
            raise ConfigurationError(msg)
    return names


class Answers:
    """A mapping of runs to HTTP answers; call it with a `Run` to get its `Answer`.

    ``keys`` are the context keys a successful run answers with (never the whole context:
    it holds what the services worked with). ``errors`` maps exception types to a status
    or to a function of the run returning an `Answer`; the most specific type wins, and
    it is consulted before the built-in rules. Options are checked when given.
    """

    def __init__(  # noqa: PLR0913 - one option per outcome
        self,
        keys: Iterable[str] | str = (),
        *,
        succeeded: int = 200,
        stopped: int = 409,
        invalid: int = 422,
        unavailable: int = 503,
        failed: int = 500,
        retry_after: float = 1,
        max_retry_after: float = 3600,
        errors: Mapping[type[BaseException], ErrorAnswer] | None = None,
    ) -> None:
        self.keys = _keys(keys)
        self.succeeded = _status(succeeded, "succeeded")
        self.stopped = _status(stopped, "stopped")
        self.invalid = _status(invalid, "invalid")
        self.unavailable = _status(unavailable, "unavailable")
        self.failed = _status(failed, "failed")
        self.retry_after = _seconds(retry_after, "retry_after")
        self.max_retry_after = _seconds(max_retry_after, "max_retry_after")
        self.errors: dict[type[BaseException], ErrorAnswer] = {}
        for kind, how in (errors or {}).items():
            given: object = kind  # checked, whatever the annotation says
            if not (isinstance(given, type) and issubclass(given, BaseException)):
                msg = f"Answers option errors maps exception types, got the key {short_repr(kind)}"
                raise ConfigurationError(msg)
            self.errors[kind] = how if callable(how) else _status(how, f"errors[{kind.__name__}]")

    def __call__(self, run: Run) -> Answer:
        """The answer to send for ``run``."""
        given: object = run  # what a caller passes is checked, whatever the annotation says
        if not isinstance(given, Run):
            msg = f"Answers takes a Run (what flow.run() returns), got {short_repr(run)}"
            raise ConfigurationError(msg)
        error = run.error
        if error is None:
            return self._success(run)
        for kind in type(error).__mro__:
            how = self.errors.get(kind)
            if how is not None:
                return self._custom(run, how)
        if run.stopped:
            return Answer(self.stopped, {"error": "stopped", "reason": _reason(run), "run_id": run.run_id}, {})
        if isinstance(error, _INVALID):
            return Answer(self.invalid, {"error": "invalid input", **_invalid(error), "run_id": run.run_id}, {})
        if isinstance(error, Retry):
            body = {"error": "unavailable", "run_id": run.run_id}
            return Answer(self.unavailable, body, {"Retry-After": str(self._retry_seconds(error.delay))})
        return self._internal(run)

    def _internal(self, run: Run) -> Answer:
        # Never the message: it may hold context values, internals or secrets.
        return Answer(self.failed, {"error": "internal error", "run_id": run.run_id}, {})

    def _retry_seconds(self, delay: object) -> int:
        # Retry refuses a bad delay when made, but the attribute may be changed after.
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < math.inf:
            return min(self.retry_after, self.max_retry_after)
        return min(math.ceil(delay), self.max_retry_after)

    def _success(self, run: Run) -> Answer:
        context = run.context
        body = {key: context[key] for key in self.keys if key in context}
        if not _encodes(body):
            bad = next(key for key, value in body.items() if not _encodes(value))
            problem = f"the answer's key {bad!r} holds a value JSON cannot carry: {type(body[bad]).__name__}"
            return self._failed_answer(run, problem)
        return Answer(self.succeeded, body, {})

    def _custom(self, run: Run, how: ErrorAnswer) -> Answer:
        if not callable(how):
            return Answer(how, {"error": type(run.error).__name__, "run_id": run.run_id}, {})
        try:
            made: object = how(run)
        except Exception as error:  # noqa: BLE001 - answered 500 and logged, never a crashed endpoint
            return self._failed_answer(run, f"the errors function {_name(how)} raised {type(error).__name__}")
        if not isinstance(made, Answer):
            problem = f"the errors function {_name(how)} must return an Answer, got {short_repr(made)}"
            return self._failed_answer(run, problem)
        if not _encodes(made.body):
            problem = f"the errors function {_name(how)} returned a body JSON cannot carry"
            return self._failed_answer(run, problem)
        return made

    def _failed_answer(self, run: Run, problem: str) -> Answer:
        _log.logger().error("web.answer_failed", run_id=run.run_id, flow=run.flow, problem=problem)
        return self._internal(run)

    def __repr__(self) -> str:
        return f"Answers(keys={self.keys!r})"


def _encodes(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _name(function: object) -> str:
    name = getattr(function, "__qualname__", None)
    return name if isinstance(name, str) else short_repr(function, 60)


def _reason(run: Run) -> str:
    reason: object = run.reason  # a StopFlow subclass may make it anything
    return reason if isinstance(reason, str) else short_repr(reason)


def _invalid(error: BaseException) -> dict[str, Any]:
    """What a 422 says: the message the service wrote and the field at fault."""
    if isinstance(error, MissingContextKey):
        return {"message": f"{error.key!r} is required", "field": error.key}
    if isinstance(error, ForkError):
        known = [value if isinstance(value, (str, int)) else short_repr(value, 40) for value in error.known]
        return {"message": f"{error.key!r} must be one of {known!r}", "field": error.key, "allowed": known}
    if isinstance(error, ValidationError):
        return {"message": "the flow cannot run on this input", "problems": list(error.problems)}
    return {"message": error.message, "field": getattr(error, "key", None)}  # type: ignore[attr-defined]


_DEFAULT = Answers()


def answer(run: Run, keys: Iterable[str] | str = ()) -> Answer:
    """The default `Answers` rules applied to ``run``, answering a success with ``keys``."""
    return Answers(keys)(run) if keys else _DEFAULT(run)
