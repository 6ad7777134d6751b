"""Assertions on runs and flows that read like the test: succeeded, stopped, failed, needs, provides.

Each raises `AssertionError` with a message naming the flow and the step, and showing
the run's path (each step and how it ended) or the flow's validation problems.
"""

from __future__ import annotations

import inspect
import warnings
from typing import TYPE_CHECKING, Any

from service_flow import _log
from service_flow._spec import service_name
from service_flow._text import listing
from service_flow.exceptions import ConfigurationError, ValidationError
from service_flow.run import Run, RunStatus
from service_flow.validate import Validation, ValidationWarning, validate

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from service_flow.flow import Flow

__all__ = ["assert_failed", "assert_needs", "assert_provides", "assert_stopped", "assert_succeeded"]


def _checked_run(run: object, what: str) -> Run:
    if not isinstance(run, Run):
        msg = f"{what}() takes the Run that flow.run() or flow.arun() returned, got {type(run).__name__}"
        raise ConfigurationError(msg)
    return run


def _path(run: Run) -> str:
    steps = [f"{step.name}{f' [{step.branch}]' if step.branch else ''} ({step.status.value})" for step in run.steps]
    return f"its steps: {' > '.join(steps)}" if steps else "no step ran"


def _where(run: Run) -> str | None:
    """The step that ended the run: the innermost one that raised, else the one the error names."""
    failed = run.failed_step
    if failed is not None:
        return failed.name
    step = getattr(run.error, "step", None)
    return step if isinstance(step, str) else None


def _at(where: str | None) -> str:
    return "before any step ran" if where is None else f"at step {where!r}"


def _outcome(run: Run) -> str:
    """How *run* ended, in words: ``failed at step 'charge' with ValueError: ...``."""
    if run.status is RunStatus.SUCCEEDED:
        return "succeeded"
    assert run.error is not None  # noqa: S101 - a run that did not succeed has an error
    at = _at(_where(run))
    if run.status is RunStatus.STOPPED:
        return f"stopped {at} (reason: {run.reason!r})"
    return f"failed {at} with {_log.describe_error(run.error)}"


def _step_name(at: object) -> str:
    if isinstance(at, str):
        return at
    if inspect.isclass(at):
        return at.__name__  # the name its instances have in a flow
    return service_name(at)


def _check_at(run: Run, at: object, how: str) -> None:
    if at is None:
        return
    expected = _step_name(at)
    where = _where(run)
    if where != expected:
        msg = f"flow {run.flow!r} {how} {_at(where)}, not at step {expected!r}; {_path(run)}"
        raise AssertionError(msg)


def assert_succeeded(run: Run) -> None:
    """Check that *run* succeeded: every step ran to its end.

    For instance ``assert_succeeded(checkout.run({"quantity": 2}))``.
    """
    run = _checked_run(run, "assert_succeeded")
    if not run.succeeded:
        msg = f"flow {run.flow!r} {_outcome(run)}, expected it to succeed; {_path(run)}"
        raise AssertionError(msg)


def assert_stopped(run: Run, at: Any = None, reason: str | None = None) -> None:
    """Check that *run* stopped (a step raised `StopFlow`), optionally *at* a step, for a *reason*.

    *at* is the step's name or its service (object or class); *reason* a part of the
    `StopFlow`'s reason (a substring, so that a test need not repeat a long message).
    """
    run = _checked_run(run, "assert_stopped")
    if run.status is not RunStatus.STOPPED:
        msg = f"flow {run.flow!r} {_outcome(run)}, expected it to stop; {_path(run)}"
        raise AssertionError(msg)
    _check_at(run, at, "stopped")
    if reason is not None and reason not in (run.reason or ""):
        msg = (
            f"flow {run.flow!r} stopped {_at(_where(run))} for {run.reason!r}, "
            f"expected a reason containing {reason!r}; {_path(run)}"
        )
        raise AssertionError(msg)


def _error_matches(error: BaseException, expected: object) -> bool:
    if isinstance(expected, str):
        return expected in str(error)
    if isinstance(expected, BaseException):
        return error is expected or (type(error) is type(expected) and error.args == expected.args)
    if inspect.isclass(expected) and issubclass(expected, BaseException):
        return isinstance(error, expected)
    msg = f"assert_failed(error=...) takes an exception class, an exception or a part of its message, got {expected!r}"
    raise ConfigurationError(msg)


def assert_failed(run: Run, at: Any = None, error: Any = None) -> BaseException:
    """Check that *run* failed (not stopped), optionally *at* a step, with an *error*; return the error.

    *at* is the step's name or its service (object or class).  *error* is an exception
    class (the error is an instance of it), an exception (the same one, or one of the same
    type with the same arguments) or a string (a part of the error's message).
    """
    run = _checked_run(run, "assert_failed")
    if run.status is not RunStatus.FAILED:
        msg = f"flow {run.flow!r} {_outcome(run)}, expected it to fail; {_path(run)}"
        raise AssertionError(msg)
    failure = run.error
    assert failure is not None  # noqa: S101 - a failed run has an error
    _check_at(run, at, "failed")
    if error is not None and not _error_matches(failure, error):
        expected = (
            f"a message containing {error!r}"
            if isinstance(error, str)
            else f"{error!r}"
            if isinstance(error, BaseException)
            else f"a {getattr(error, '__name__', error)}"
        )
        msg = (
            f"flow {run.flow!r} failed {_at(_where(run))} with {_log.describe_error(failure)}, "
            f"expected {expected}; {_path(run)}"
        )
        raise AssertionError(msg)
    return failure


def _keys(given: Iterable[str] | Mapping[str, Any]) -> set[str]:
    return {given} if isinstance(given, str) else set(given)


def _given_text(keys: set[str]) -> str:
    return f"given {listing(repr(key) for key in sorted(keys))}" if keys else "given nothing"


def _validate(flow: Flow, keys: set[str]) -> Validation:
    with warnings.catch_warnings():  # what the warning says, the assertions say better
        warnings.simplefilter("ignore", ValidationWarning)
        return validate(flow, keys)


def _problems(error: ValidationError) -> str:
    return "\n".join(f"  - {problem}" for problem in error.problems)


def assert_needs(flow: Flow, *keys: str, given: Iterable[str] | Mapping[str, Any] = ()) -> None:
    """Check that *flow* needs each of *keys* in its input (`validate` underneath).

    With *given* (the other keys the input holds) and *keys* the flow validates, and
    without any one of *keys* it does not: a step or fork requires it.  A key that
    validation only assumes to come from a step that does not declare ``provides``
    is not needed for sure, and fails the check saying so.
    """
    known = _keys(given) | set(keys)
    try:
        _validate(flow, known)
    except ValidationError as error:
        msg = f"flow {flow.name!r} cannot run {_given_text(known)}:\n{_problems(error)}"
        raise AssertionError(msg) from None
    for key in keys:
        try:
            validation = _validate(flow, known - {key})
        except ValidationError as error:
            if any(f"needs {key!r}" in problem for problem in error.problems):
                continue
            raise  # pragma: no cover - removing a key can only make it missing
        trusted = [step for step, assumed in validation.assumed if assumed == key]
        if trusted:
            msg = (
                f"flow {flow.name!r} needs {key!r} only if no step provides it: validation assumes "
                f"that a step without `provides` sets it before {listing(trusted)} reads it; "
                f"steps without `provides`: {listing(validation.unchecked)}"
            )
        else:
            msg = f"flow {flow.name!r} does not need {key!r}: it validates {_given_text(known - {key})}"
        raise AssertionError(msg)


def assert_provides(flow: Flow, *keys: str, given: Iterable[str] | Mapping[str, Any] = ()) -> None:
    """Check that *flow*, given the keys *given*, ends with each of *keys* on every path.

    `validate` underneath: a key counts when it is given or declared in the ``provides``
    of a step on every path through the flow.
    """
    known = _keys(given)
    try:
        validation = _validate(flow, known)
    except ValidationError as error:
        msg = f"flow {flow.name!r} cannot run {_given_text(known)}:\n{_problems(error)}"
        raise AssertionError(msg) from None
    missing = [key for key in keys if key not in validation.guaranteed]
    if missing:
        guaranteed = listing(repr(key) for key in sorted(validation.guaranteed)) or "nothing"
        msg = (
            f"flow {flow.name!r} does not provide {listing(repr(key) for key in missing)} on every path "
            f"{_given_text(known)}; it guarantees {guaranteed}"
        )
        if validation.unchecked:
            msg += f"; steps without `provides` (they may set it, but say nothing): {listing(validation.unchecked)}"
        raise AssertionError(msg)
