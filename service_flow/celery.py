"""Run flows as Celery tasks, with the meaning `StopFlow`, `Retry` and `Fatal` have everywhere.

Install the ``celery`` extra (``pip install "service-flow[celery]"``), then turn a flow
into a task of your Celery app::

    from celery import Celery
    from service_flow import RetryPolicy
    from service_flow.celery import flow_task

    app = Celery("shop", broker="redis://127.0.0.1:6379/0", backend="redis://127.0.0.1:6379/0")
    checkout_task = flow_task(app, checkout, name="shop.checkout", retry=RetryPolicy(max_attempts=5))

    result = checkout_task.delay({"order_id": 7, "payment": "card"}).get()
    result["status"], result["context"]["total"]

The task takes the input mapping and returns a `FlowTaskResult`, a JSON-serialisable dict.
What each way a run ends becomes, with Celery's own mechanisms:

=================  ==========================================================================
run ends with      the task
=================  ==========================================================================
success            returns ``{"status": "succeeded", "context": ...}``
`StopFlow`         returns ``{"status": "stopped", "reason": ..., "context": ...}``, no error
`Retry`            ``task.retry(countdown=...)``: the delay from the `RetryPolicy` (or the
                   ``Retry(delay=...)``); after ``max_attempts`` attempts it fails with
                   `FlowTaskFailed` listing every attempt's error
`Fatal`            the worker process tears down and sets up the flow's `Resources`, then
                   sends the input again (``task.retry``, the restart count in the
                   message; the task acknowledges late, so the message is never lost);
                   when the input's attempt after ``max_restarts`` restarts in a row
                   raises `Fatal` again, the worker process gives up: it requeues the
                   message and shuts the worker down (run eagerly: `FlowTaskFailed`)
any other error    fails with `FlowTaskFailed` (a `ForkError` too: restarting cannot help)
=================  ==========================================================================

A flow with ``async`` services runs in an event loop of its own for each task.  The one
exception this module adds::

    FlowError
    └── FlowTaskFailed      a flow task failed; ``errors`` lists every attempt's error
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import structlog
from typing_extensions import TypedDict

from service_flow import _log
from service_flow._ledger import fresh
from service_flow.clock import SYSTEM_CLOCK, Clock
from service_flow.exceptions import FlowError, InvalidInput, MissingContextKey
from service_flow.flow import Flow
from service_flow.policy import ErrorKind, RetryPolicy, Steering
from service_flow.resources import Resources
from service_flow.run import RunStatus

try:
    from celery.exceptions import Reject
except ImportError as error:  # pragma: no cover - depends on the environment
    msg = 'service_flow.celery needs Celery: pip install "service-flow[celery]"'
    raise ImportError(msg) from error

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from service_flow.run import Run

__all__ = ["TASK_DEFAULTS", "FlowTaskFailed", "FlowTaskResult", "flow_task"]

TASK_DEFAULTS: dict[str, Any] = {
    # The message is acknowledged only once the task has ended, and a worker process
    # that dies mid-task hands it back: a crash never loses an input.
    "acks_late": True,
    "reject_on_worker_lost": True,
    # The flow's RetryPolicy counts attempts, not Celery.
    "max_retries": None,
}
"""The Celery task options `flow_task` sets (the keywords you pass override them)."""

# Keyword arguments the task sends itself on a retry (reserved: not input keys).
_ERRORS_KWARG = "attempt_errors"
_RESTARTS_KWARG = "fatal_restarts"


class FlowTaskResult(TypedDict):
    """What a flow task returns: a JSON-serialisable summary of the run."""

    status: str
    """``"succeeded"`` or ``"stopped"`` (a failure raises `FlowTaskFailed` instead)."""
    reason: str | None
    """Why the flow stopped (the `StopFlow` message), else ``None``."""
    context: dict[str, Any]
    """The final context, or only the ``exports`` keys when the task names some."""
    flow: str
    """The flow's name."""
    run_id: str
    """The run id of the last attempt (its log events carry it)."""
    attempts: int
    """How many times the input was run, counted as the driver counts them (retries and the
    runs after a `Fatal` restart included)."""


class FlowTaskFailed(FlowError):
    """A flow task failed: an error that is not retried, or retries that ran out.

    ``errors`` holds every attempt's error as ``"Type: message"`` strings, oldest first;
    ``attempts`` counts them.  Both survive Celery's JSON result serializer.
    """

    def __init__(
        self, message: object = "", errors: Sequence[str] = (), flow: str | None = None, *, step: str | None = None
    ) -> None:
        super().__init__(message, flow=flow, step=step)
        self.errors = tuple(str(error) for error in errors)
        # Celery's JSON result serializer keeps an exception's args only and rebuilds it on
        # the client with ``cls(*args)``: the errors and the flow's name travel there.
        self.args = (message, list(self.errors), flow)

    def __str__(self) -> str:
        return self.message  # it names the flow, and the last error names its step

    @property
    def attempts(self) -> int:
        """How many attempts failed (one per error)."""
        return len(self.errors)


class _Worker:
    """This worker process's resources for the flow, and whether it gave up after `Fatal`."""

    def __init__(self, flow: Flow, steering: Steering, clock: Clock) -> None:
        self.flow = flow
        self.steering = steering
        self.clock = clock
        self.gave_up = False
        """Set once the worker was asked to shut down: from then on, every message goes back."""
        self._resources: Resources | None = None

    @property
    def resources(self) -> Resources:
        if self._resources is None:
            self._resources = Resources.of(self.flow)
        return self._resources

    def refuse_if_gave_up(self) -> None:
        """Send the message back when this process gave up: its shutdown is on the way."""
        if self.gave_up:
            raise Reject("this worker process gave up after Fatal errors and is shutting down", requeue=True)

    def on_fatal(
        self, task: Any, log: Any, errors: list[str], cause: BaseException, inputs: dict[str, Any], restarts: int
    ) -> NoReturn:
        """Restart and run the input again, or give up (the driver's budget, per input).

        ``restarts`` is this input's restart number in a row, carried by its messages.
        """
        request = task.request
        log.warning("celery.task.fatal", error=errors[-1], restarts=restarts)
        delay = self.steering.restart_delay(restarts)
        if delay is None:
            log.error("celery.worker.gave_up", restarts=restarts - 1, hostname=request.hostname)
            reason = self.steering.gave_up(restarts)
            if request.is_eager or not request.hostname:  # no worker to shut down: the task fails
                msg = f"flow {self.flow.name!r} gave up: {reason}: {errors[-1]}"
                raise FlowTaskFailed(msg, errors, self.flow.name) from cause
            self.gave_up = True
            # A warm shutdown through Celery's remote control: the running task ends,
            # prefetched messages go back, and the process supervisor decides what next.
            task.app.control.shutdown(destination=[request.hostname])
            why = f"{reason}: {errors[-1]}"
            raise Reject(why, requeue=True) from cause
        self.clock.sleep(delay)
        try:
            self.resources.restart()
        except Exception as error:  # noqa: BLE001 - counted: the next Fatal backs off longer
            log.warning("celery.worker.restart_failed", error=_log.describe_error(error), restarts=restarts)
        else:
            log.warning(
                "celery.worker.restarted", resources=len(self.resources), restarts=restarts, backoff_s=round(delay, 3)
            )
        # The same input again, at once, with its count: a new message, so that the count
        # travels with it (a requeued message could not carry it).
        kwargs = {_ERRORS_KWARG: errors, _RESTARTS_KWARG: restarts}
        raise task.retry(args=(inputs,), kwargs=kwargs, countdown=0, exc=cause)


def flow_task(  # noqa: PLR0913 - the driver's options, plus Celery's
    app: Any,
    flow: Flow | Callable[..., Any],
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    restart: RetryPolicy | None = None,
    max_restarts: int = 5,
    retry_on: type[BaseException] | Iterable[type[BaseException]] = (),
    fatal_on: type[BaseException] | Iterable[type[BaseException]] = (),
    exports: Iterable[str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    **options: Any,
) -> Any:
    """Register ``flow`` (a flow or a single service) as a task of the Celery ``app``; return the task.

    The task takes the input mapping (JSON-serialisable with Celery's default
    serializer), or the inputs as keyword arguments (``task.delay(order_id=7)``), and
    returns a `FlowTaskResult`.  Exceptions mean what they mean to the in-process
    driver (the same `service_flow.policy.Steering`):

    * ``retry`` (default ``RetryPolicy()``): attempts and delays for `Retry` and the
      types in ``retry_on``; the countdown of ``task.retry`` comes from it, a
      ``Retry(delay=...)`` overrides it, up to the policy's ``ceiling``;
    * ``restart`` (default, as the driver's: `service_flow.policy.RESTART`, 1 s doubling up to 30 s)
      and ``max_restarts`` (default 5): after a `Fatal` (or a type in ``fatal_on``) the
      worker process waits ``restart.delay(n)`` for the input's n-th restart in a row,
      recreates the flow's `Resources`, and sends the input again (``task.retry``, the
      count in the message); when the input's attempt after ``max_restarts`` restarts
      in a row raises `Fatal` again, the worker shuts down instead (warm shutdown,
      message requeued), so a broken worker does not spin.  Run eagerly, the task fails
      with `FlowTaskFailed` then;
    * ``exports``: the keys the result carries (default: the whole final context), a
      list of strings checked here; every one must be in the context of a succeeded run;
    * ``name`` (default: the flow's name) and ``options`` go to ``app.task``, over
      `TASK_DEFAULTS` (``acks_late``, ``reject_on_worker_lost``); ``bind`` and a
      ``max_retries`` are refused (the task is bound, and the policies count attempts).

    Log events (``celery.task.succeeded``, ``.stopped``, ``.retrying``, ``.failed``,
    ``.fatal``) carry the Celery ``task_id`` and the flow's ``run_id``; during the run,
    ``task_id`` is also bound in structlog's context variables, so the flow's own events
    carry it when your structlog configuration merges them.
    """
    flow = flow if isinstance(flow, Flow) else Flow(flow)
    export_keys, export_problem = _exports(exports)
    steering = Steering.of(
        f"flow_task for flow {flow.name!r}",
        retry=retry,
        restart=restart,
        max_restarts=max_restarts,
        retry_on=retry_on,
        fatal_on=fatal_on,
        problems=[
            export_problem,
            None if isinstance(clock, Clock) else f"clock takes a service_flow.Clock, got {clock!r}",
            None if name is None or (type(name) is str and name) else f"name takes a non-empty str, got {name!r}",
            *_option_problems(options),
        ],
    )
    worker = _Worker(flow, steering, clock)

    def run_flow(task: Any, *args: Any, **kwargs: Any) -> FlowTaskResult:
        request = task.request
        attempt_errors, restarts, problem = _carried(kwargs)
        attempt = len(attempt_errors) + 1
        log = _log.logger().bind(task=task.name, task_id=request.id, flow=flow.name, attempt=attempt)
        worker.refuse_if_gave_up()
        inputs, refused = _inputs(args, kwargs)
        problem = problem or refused
        if problem is not None:
            error: BaseException = InvalidInput(problem)
            return _fail(log, [*attempt_errors, _log.describe_error(error)], flow, error)
        with structlog.contextvars.bound_contextvars(task_id=request.id):
            # A worker runs one task at a time per process (or thread): an async flow
            # gets an event loop of its own for the run.  The run gets a deep copy: what
            # it does to its context never reaches the caller's input (run eagerly) or
            # the input the next attempt's message carries.
            context = fresh(inputs)
            run = asyncio.run(flow.arun(context)) if flow.is_async else flow.run(context)
        log = log.bind(run_id=run.run_id)
        failure = run.error if run.status is RunStatus.FAILED else None
        if failure is None:
            try:
                return _result(run, export_keys, attempt, task, log)
            except FlowError as error:
                return _fail(log, [*attempt_errors, _log.describe_error(error)], flow, error)
        errors = [*attempt_errors, _log.describe_error(failure)]
        kind = steering.classify(failure)
        if kind is ErrorKind.FATAL:
            worker.on_fatal(task, log, errors, failure, inputs, restarts + 1)
        if kind is ErrorKind.RETRY:
            countdown = steering.retry_delay(attempt, failure)
            if countdown is not None:  # finite, between 0 and the policy's ceiling
                log.info("celery.task.retrying", error=errors[-1], countdown_s=round(countdown, 3))
                raise task.retry(args=(inputs,), kwargs={_ERRORS_KWARG: errors}, countdown=countdown, exc=failure)
        return _fail(log, errors, flow, failure)

    task_options = {**TASK_DEFAULTS, "name": name or flow.name, **options}
    return app.task(bind=True, **task_options)(run_flow)


def _option_problems(options: dict[str, Any]) -> list[str]:
    """Celery options that would break the contract: the task is bound, the policy counts."""
    problems = []
    if "bind" in options:
        problems.append("bind is not an option: the task is always bound (it retries itself)")
    if options.get("max_retries") is not None:
        problems.append(
            f"max_retries={options['max_retries']!r} would cut the retries and restarts short: "
            "give retry=RetryPolicy(max_attempts=...) and max_restarts= instead"
        )
    return problems


def _exports(exports: object) -> tuple[tuple[str, ...] | None, str | None]:
    """The exported keys, and what is wrong with them (checked when the task is made)."""
    if exports is None:
        return None, None
    if isinstance(exports, (str, bytes)) or not isinstance(exports, Iterable):
        return None, f"exports takes a list of context keys (strings), got {exports!r}"
    keys = tuple(exports)
    if not all(type(key) is str for key in keys):
        return None, f"exports must be context keys (strings), got {keys!r}"
    return keys, None


def _carried(kwargs: dict[str, Any]) -> tuple[list[str], int, str | None]:
    """The attempts' errors and the restarts in a row a retry message carries, and what is wrong.

    The task sends them itself; a caller passing these reserved keywords with other
    values gets an `InvalidInput` naming them, never a crash inside the task.
    """
    errors: object = kwargs.pop(_ERRORS_KWARG, [])
    restarts: object = kwargs.pop(_RESTARTS_KWARG, 0)
    problems = []
    if not isinstance(errors, (list, tuple)):
        problems.append(f"{_ERRORS_KWARG} (reserved for the task's retries) must be a list, got {errors!r}")
        errors = []
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        problems.append(f"{_RESTARTS_KWARG} (reserved for the task's retries) must be a whole number, got {restarts!r}")
        restarts = 0
    return [str(error) for error in errors], restarts, "; ".join(problems) or None


def _inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The input mapping of a task call: one positional mapping, or keyword arguments."""
    if not args:
        return dict(kwargs), None
    if len(args) > 1 or kwargs:
        given = f"{len(args)} positional and {len(kwargs)} keyword arguments"
        return {}, f"the task takes one mapping of inputs, or the inputs as keyword arguments, not both: got {given}"
    if not isinstance(args[0], Mapping):
        return {}, f"the task takes a mapping of inputs, got {type(args[0]).__name__}"
    return dict(args[0]), None


def _result(run: Run, exports: tuple[str, ...] | None, attempt: int, task: Any, log: Any) -> FlowTaskResult:
    context = run.context
    if exports is not None:
        missing = [key for key in exports if key not in context]
        if missing and run.status is RunStatus.SUCCEEDED:
            msg = f"the flow succeeded without the exported key {missing[0]!r}"
            raise MissingContextKey(msg, key=missing[0], service=task.name, available=context, flow=run.flow)
        context = {key: context[key] for key in exports if key in context}
    if task.app.conf.result_serializer == "json":
        _check_json(context, run.flow)
    result: FlowTaskResult = {
        "status": run.status.value,
        "reason": run.reason,
        "context": context,
        "flow": run.flow,
        "run_id": run.run_id,
        "attempts": attempt,
    }
    if run.status is RunStatus.STOPPED:
        log.info("celery.task.stopped", reason=run.reason)
    elif structlog.is_configured():  # unconfigured structlog would print debug events
        log.debug("celery.task.succeeded")
    return result


def _check_json(context: Mapping[str, Any], flow: str) -> None:
    try:
        json.dumps(context)
    except (TypeError, ValueError):
        pass
    else:
        return
    bad = [f"{key!r} ({type(value).__name__})" for key, value in context.items() if not _is_json(value)]
    msg = (
        f"the result serializer is JSON and these context values are not JSON-serialisable: {', '.join(bad)}; "
        "name the keys the result should carry with flow_task(..., exports=[...])"
    )
    raise FlowError(msg, flow=flow)


def _is_json(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _fail(log: Any, errors: list[str], flow: Flow, cause: BaseException) -> FlowTaskResult:
    attempts = len(errors)
    log.warning("celery.task.failed", error=errors[-1], attempts=attempts)
    noun = "attempt" if attempts == 1 else "attempts"
    msg = f"flow {flow.name!r} failed after {attempts} {noun}: {errors[-1]}"
    raise FlowTaskFailed(msg, errors, flow.name) from cause
