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
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Union

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
            return Answer(self.succeeded, self._chosen(run), {})
        for kind in type(error).__mro__:
            how = self.errors.get(kind)
            if how is not None:
                return self._custom(run, how)
        if run.stopped:
            return Answer(self.stopped, {"error": "stopped", "reason": run.reason, "run_id": run.run_id}, {})
        if isinstance(error, _INVALID):
            return Answer(self.invalid, {"error": "invalid input", **_invalid(error), "run_id": run.run_id}, {})
        if isinstance(error, Retry):
            delay = self.retry_after if error.delay is None else math.ceil(error.delay)
            seconds = min(delay, self.max_retry_after)
            body = {"error": "unavailable", "run_id": run.run_id}
            return Answer(self.unavailable, body, {"Retry-After": str(seconds)})
        # Never the message: it may hold context values, internals or secrets.
        return Answer(self.failed, {"error": "internal error", "run_id": run.run_id}, {})

    def _chosen(self, run: Run) -> dict[str, Any]:
        context = run.context
        body = {key: context[key] for key in self.keys if key in context}
        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            bad = next(key for key, value in body.items() if not _encodes(value))
            msg = f"the answer's key {bad!r} holds a value JSON cannot carry: {type(body[bad]).__name__}"
            raise ConfigurationError(msg) from exc
        return body

    def _custom(self, run: Run, how: ErrorAnswer) -> Answer:
        if not callable(how):
            return Answer(how, {"error": type(run.error).__name__, "run_id": run.run_id}, {})
        made: object = how(run)
        if not isinstance(made, Answer):
            msg = f"an Answers error function must return an Answer, {short_repr(how)} returned {short_repr(made)}"
            raise ConfigurationError(msg)
        return made

    def __repr__(self) -> str:
        return f"Answers(keys={self.keys!r})"


def _encodes(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


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
