"""The driver: feeds many inputs through one flow and decides what each exception means.

A queue consumer, a batch job, a webhook processor: each is a loop that runs a flow once
per input.  `Driver` is that loop.  What happens to an input depends on how its run ends:

=================  ==============================================================
run ends with      the driver
=================  ==============================================================
success            records it as *succeeded*
`StopFlow`         records it as *stopped*, with the reason; never retried
`Retry`            runs the same input again (a fresh copy) after the delay of its
                   `RetryPolicy`, or ``Retry(delay=...)``; when attempts run out the
                   input becomes a *dead letter* carrying every attempt's error
`Fatal`            restarts the processor: every resource of the flow's services
                   gets ``teardown()`` then ``setup()`` (see `service_flow.Resources`),
                   then the same input runs again; restarts back off too, and after
                   ``max_restarts`` in a row the driver stops and reports every input
                   it did not process
anything else      a *dead letter* (``retry_on``/``fatal_on`` turn given exception
                   types into retries or restarts)
=================  ==============================================================

Inputs stream: the driver reads the iterable lazily and keeps only what it must (dead
letters, inputs waiting for a retry), so a generator of a million mappings runs in
constant memory.  Work runs inline (``workers=1``), on ``workers`` threads, or on any
`concurrent.futures.Executor` (a process pool, Dask's ``client.get_executor()``) in
batches.  `Driver.arun` is the asyncio counterpart for async flows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import enum
import heapq
import itertools
import math
import pickle
import random
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union

from service_flow import _log
from service_flow._progress import Progress
from service_flow.clock import SYSTEM_CLOCK, Clock
from service_flow.exceptions import ConfigurationError, FlowError, InvalidInput, RemoteError
from service_flow.flow import Flow
from service_flow.policy import RESTART, ErrorKind, RetryPolicy, classify, steering_problems
from service_flow.resources import Resources

if TYPE_CHECKING:
    import types
    from collections.abc import Generator

__all__ = ["Drive", "Driver", "Outcome", "Report", "Result"]

Input = Mapping[str, Any]
InputId = Union[str, Callable[[Input], Any], None]


class Outcome(str, enum.Enum):
    """How the driver finished with one input."""

    SUCCEEDED = "succeeded"
    """The flow ran to its end."""
    STOPPED = "stopped"
    """A service raised `StopFlow`: done, not a failure."""
    DEAD = "dead"
    """A dead letter: retries ran out, or an error that is neither retried nor fatal."""
    NOT_PROCESSED = "not_processed"
    """The driver stopped (`Driver.stop`, a signal, too many restarts) before finishing it;
    ``attempts == 0`` means it was never started."""

    def __str__(self) -> str:
        return self.value


class Result(NamedTuple):
    """What became of one input."""

    position: int
    """The input's position in the stream, from 0."""
    id: Any
    """The input's id (``input_id`` of the driver; the index when none was given)."""
    input: Input
    """The input as it was given."""
    outcome: Outcome
    """How it ended."""
    context: dict[str, Any] | None
    """The final context when it succeeded, else ``None``."""
    errors: tuple[BaseException, ...]
    """Every error raised while processing it, one per failed attempt, in order."""
    attempts: int
    """How many times the flow ran on it (0 when not started)."""

    @property
    def error(self) -> BaseException | None:
        """The last error, if any."""
        return self.errors[-1] if self.errors else None

    @property
    def reason(self) -> str | None:
        """Why it stopped (`StopFlow`'s reason) or why it was not finished."""
        error = self.error
        return getattr(error, "reason", None) if error is not None else None


@dataclass
class Report:
    """The outcome of a driver run: counts, dead letters, what was not processed."""

    flow: str
    succeeded: int = 0
    """Inputs whose flow ran to its end."""
    stopped: int = 0
    """Inputs stopped by `StopFlow`."""
    retries: int = 0
    """Extra attempts made because of `Retry` (or ``retry_on``)."""
    restarts: int = 0
    """Processor restarts (teardown and setup of every resource) after `Fatal`."""
    dead_letters: list[Result] = field(default_factory=list)
    """Inputs that failed for good, with their inputs and every attempt's error."""
    not_processed: list[Result] = field(default_factory=list)
    """Inputs read from the source but not finished when the driver stopped early (those
    waiting for a retry, the one that exhausted the restarts, those never started)."""
    unread: Iterator[Input] | AsyncIterator[Input] | None = None
    """The rest of the source when the driver stopped before reading it all: pass it to
    another `Driver.run` to go on.  ``None`` when the source was read to its end."""
    stop_reason: str | None = None
    """Why the driver stopped early (``None`` when it processed everything)."""
    duration: float = 0.0
    """Seconds from the first input to the last outcome (on the driver's clock)."""

    @property
    def dead(self) -> int:
        """How many dead letters."""
        return len(self.dead_letters)

    @property
    def processed(self) -> int:
        """Inputs finished one way or another: succeeded, stopped or dead."""
        return self.succeeded + self.stopped + self.dead

    @property
    def ok(self) -> bool:
        """Everything read was processed and nothing is a dead letter."""
        return not self.dead_letters and not self.not_processed and self.stop_reason is None

    @property
    def rate(self) -> float:
        """Inputs processed per second."""
        return self.processed / self.duration if self.duration > 0 else 0.0

    def counts(self) -> dict[str, int]:
        """The number of inputs per outcome, plus retries and restarts."""
        return {
            "succeeded": self.succeeded,
            "stopped": self.stopped,
            "dead": self.dead,
            "not_processed": len(self.not_processed),
            "retries": self.retries,
            "restarts": self.restarts,
        }

    def __str__(self) -> str:
        counts = ", ".join(f"{key} {value}" for key, value in self.counts().items())
        tail = f"; stopped early: {self.stop_reason}" if self.stop_reason else ""
        return f"flow {self.flow!r}: {counts} in {self.duration:.3f}s{tail}"


class _Item:
    """An input the driver has to remember: it failed at least once."""

    __slots__ = ("attempts", "due", "errors", "index", "input")

    def __init__(self, index: int, data: Input) -> None:
        self.index = index
        self.input = data
        self.attempts = 0
        self.errors: list[BaseException] = []
        self.due = 0.0  # when a retry may run, on the driver's clock


# -- running a batch where the work is -------------------------------------------------

_Raw = tuple[Optional[ErrorKind], Any]  # (None, context) on success, else (kind, error)

_REMOTE_FLOWS: dict[str, tuple[Flow, Resources]] = {}
_REMOTE_LOCK = threading.Lock()
_REMOTE_CACHE_SIZE = 8
# Adaptive batches (an executor without batch_size): the first size, the largest, and
# about how many seconds of work one batch may hold.
_FIRST_BATCH = 8
_MAX_BATCH = 1024
_BATCH_WORK = 1.0


def _run_batch(
    flow: Flow,
    inputs: list[Input],
    retry_on: tuple[type[BaseException], ...],
    fatal_on: tuple[type[BaseException], ...],
    resources: Resources | None = None,
) -> list[_Raw]:
    """Run each input; with ``resources``, restart them right after a `Fatal`.

    (Only a worker process holding its own copy of the flow restarts there; threads
    share the flow, so the driver restarts once nothing is in flight.)
    """
    out: list[_Raw] = []
    for data in inputs:
        try:
            out.append((None, flow(data)))
        except Exception as error:  # noqa: BLE001, PERF203 - every error is an outcome
            kind = classify(error, retry_on=retry_on, fatal_on=fatal_on)
            outcome: BaseException = error
            if resources is not None:
                outcome = _portable(error)  # what travels back
                if kind is ErrorKind.FATAL:
                    try:
                        resources.restart()
                    except Exception as failure:  # noqa: BLE001 - reported with the input
                        outcome = _portable(failure)
            out.append((kind, outcome))
    return out


def _portable(error: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    except Exception:  # noqa: BLE001 - whatever fails to travel is replaced
        return RemoteError(
            f"{type(error).__name__}: {error}",
            error_type=f"{type(error).__module__}.{type(error).__qualname__}",
            flow=getattr(error, "flow", None),
            step=getattr(error, "step", None),
        )
    return error


def _run_remote_batch(
    token: str,
    flow_bytes: bytes,
    inputs: list[Input],
    retry_on: tuple[type[BaseException], ...],
    fatal_on: tuple[type[BaseException], ...],
) -> tuple[list[_Raw], float]:
    """Run a batch in another process: the flow is unpickled once per process and kept.

    Keeping it keeps its resources (sessions, connections) open between batches; a
    `Fatal` restarts this process's copy of them before the batch goes on.  Returns the
    outcomes and the seconds the batch took here, which size the next batches.
    """
    with _REMOTE_LOCK:
        held = _REMOTE_FLOWS.get(token)
        if held is None:
            flow = pickle.loads(flow_bytes)  # noqa: S301 - sent by our own driver
            held = _REMOTE_FLOWS[token] = (flow, Resources.of(flow))
            while len(_REMOTE_FLOWS) > _REMOTE_CACHE_SIZE:
                del _REMOTE_FLOWS[next(iter(_REMOTE_FLOWS))]
    flow, resources = held
    started = time.perf_counter()
    raws = _run_batch(flow, inputs, retry_on, fatal_on, resources)
    return raws, time.perf_counter() - started


# -- the driver --------------------------------------------------------------------------


class Driver:
    """Feeds inputs through one flow, steering by `StopFlow`, `Retry` and `Fatal`.

    >>> from service_flow import StopFlow
    >>> def check(n):
    ...     if n < 0:
    ...         raise StopFlow("negative")
    ...     return {"double": 2 * n}
    >>> from structlog.testing import capture_logs
    >>> with capture_logs() as events:
    ...     report = Driver(check).run([{"n": 1}, {"n": -1}, {"n": 2}])
    >>> report.counts()["succeeded"], report.counts()["stopped"]
    (2, 1)

    ``retry``
        the `RetryPolicy` for `Retry` (attempts, backoff, cap, jitter).
    ``restart``
        the backoff between restarts after `Fatal`; ``max_restarts`` restarts in a row
        (with no input finished in between) make the driver give up.
    ``retry_on`` / ``fatal_on``
        exception types to treat as `Retry` / `Fatal`.
    ``workers``
        how many inputs run at once: 1 runs inline; more use threads (I/O-bound flows),
        or size the work kept in flight on ``executor``.
    ``executor``
        any `concurrent.futures.Executor`.  Outside a thread pool the flow is pickled
        and each worker process keeps its own copy (and restarts its own resources on
        `Fatal`), and inputs go in batches: ``batch_size`` of them, or, by default, as
        many as keep the dispatch under about a fifth of the work (measured as batches
        come back), up to about a second of work per batch.
    ``input_id``
        a key of the inputs, or a function of an input, naming it in results and logs.
    ``on_result``
        called with each `Result` as it completes (to ack messages one by one).
    ``clock``
        where the driver reads the time and sleeps (`service_flow.testing.FakeClock`
        in tests).
    ``seed``
        seeds the jitter of the backoff, for reproducible delays.
    ``progress``
        print counts, rate and ETA to stderr about once a second (``total`` helps the
        ETA when the inputs have no length).
    ``handle_signals``
        while `run` is running in the main thread, SIGINT and SIGTERM stop the driver
        gracefully (a second one interrupts at once).
    """

    def __init__(  # noqa: PLR0913 - every option is keyword-only and documented
        self,
        flow: Flow | Callable[..., Any],
        *,
        retry: RetryPolicy | None = None,
        restart: RetryPolicy | None = None,
        max_restarts: int = 5,
        retry_on: Iterable[type[BaseException]] = (),
        fatal_on: Iterable[type[BaseException]] = (),
        workers: int = 1,
        executor: cf.Executor | None = None,
        batch_size: int | None = None,
        input_id: InputId = None,
        on_result: Callable[[Result], object] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        seed: int | None = None,
        progress: bool = False,
        total: int | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.flow = flow if isinstance(flow, Flow) else Flow(flow)
        self.retry = retry if retry is not None else RetryPolicy()
        self.restart = restart if restart is not None else RESTART
        self.retry_on = tuple(retry_on)
        self.fatal_on = tuple(fatal_on)
        problems = steering_problems(max_restarts, self.retry_on, self.fatal_on)
        if workers < 1:
            problems.append(f"workers must be at least 1, got {workers!r}")
        if batch_size is not None and batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {batch_size!r}")
        if problems:
            msg = f"Driver for flow {self.flow.name!r}: {'; '.join(problems)}"
            raise ConfigurationError(msg, flow=self.flow.name)
        self.max_restarts = max_restarts
        self.workers = workers
        self.executor = executor
        self.remote = executor is not None and not isinstance(executor, cf.ThreadPoolExecutor)
        self.batch_size = batch_size
        self.adaptive = batch_size is None and self.remote
        self.input_id = input_id
        self.on_result = on_result
        self.clock = clock
        self.rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self.progress = progress
        self.total = total
        self.handle_signals = handle_signals
        self.resources = Resources.of(self.flow)
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._token = uuid.uuid4().hex
        self._flow_bytes: bytes | None = None

    def __repr__(self) -> str:
        return f"Driver({self.flow.name!r}, workers={self.workers})"

    # -- public ------------------------------------------------------------------------

    def run(self, inputs: Iterable[Input]) -> Report:
        """Process every input and return the `Report` (see the class docstring)."""
        on_result = self.on_result
        self._check_sync()
        drive = Drive(self, inputs, emit=on_result is not None)
        if on_result is None:
            for _ in drive:
                pass
        else:
            for result in drive:
                on_result(result)
        assert drive.report is not None  # noqa: S101 - set when the iteration ends
        return drive.report

    def iter(self, inputs: Iterable[Input]) -> Drive:
        """Process the inputs lazily, yielding each `Result` as it completes.

        The `Drive` returned has the `Report` in ``.report`` once it is exhausted.
        """
        self._check_sync()
        return Drive(self, inputs, emit=True)

    def stop(self, reason: str = "stop() was called") -> None:
        """Finish the inputs in flight, start no new ones, and end the run (thread-safe)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called (or a signal received) during the current run."""
        return self._stop.is_set()

    async def arun(self, inputs: Iterable[Input] | AsyncIterable[Input], concurrency: int | None = None) -> Report:
        """Process every input with an async flow, ``concurrency`` (default ``workers``) at a time."""
        return await _AsyncDrive(self, inputs, concurrency or self.workers).run()

    # -- shared by the sync and async loops ---------------------------------------------

    def _check_sync(self) -> None:
        if self.flow.is_async:
            msg = f"flow {self.flow.name!r} has async services: use `await driver.arun(inputs)`"
            raise FlowError(msg, flow=self.flow.name)

    def _id(self, index: int, data: Input) -> Any:
        key = self.input_id
        if key is None:
            return index
        try:
            return key(data) if callable(key) else data[key]
        except Exception:  # noqa: BLE001 - an input without an id still gets processed
            return index

    def _begin(self) -> None:
        self._stop.clear()
        self._stop_reason = None

    def _flow_payload(self) -> bytes:
        if self._flow_bytes is None:
            self._flow_bytes = pickle.dumps(self.flow)
        return self._flow_bytes


class Drive(Iterator[Result]):
    """One run of a `Driver` over some inputs, iterated for its results."""

    def __init__(self, driver: Driver, inputs: Iterable[Input], *, emit: bool) -> None:
        self.driver = driver
        self.report: Report | None = None
        self._source = iter(inputs)
        self._emit = emit
        self._gen = self._generate()

    def __next__(self) -> Result:
        return next(self._gen)

    def _generate(self) -> Generator[Result, None, None]:
        driver = self.driver
        driver._begin()
        state = _State(driver, self._source)
        with _signals(driver):
            if state.debug:
                state.log.debug("driver.started", workers=driver.workers, remote=driver.remote)
            try:
                if driver.executor is None and driver.workers == 1:
                    yield from state.inline(emit=self._emit)
                else:
                    yield from state.pooled(emit=self._emit)
            finally:
                self.report = state.finish()


class _State:
    """The bookkeeping of one run: counts, waiting retries, restarts in a row."""

    def __init__(self, driver: Driver, source: Iterator[Input]) -> None:
        self.driver = driver
        self.source = source
        self.clock = driver.clock
        self.report = Report(flow=driver.flow.name)
        self.started = driver.clock.now()
        self.index = itertools.count()
        self.waiting: list[tuple[float, int, _Item]] = []  # (due, index, item): a heap
        self.restarts_in_row = 0
        self.exhausted = False
        self.schedule = True  # push retries on `waiting` (the async loop sleeps per task)
        self.batch = driver.batch_size or (_FIRST_BATCH if driver.adaptive else 1)
        self.sent: dict[cf.Future[Any], float] = {}  # when each batch left, for sizing
        self.log = _log.logger().bind(flow=driver.flow.name)
        self.debug = _log.debug_logger() is not None
        self.progress = Progress(driver.total, driver.clock) if driver.progress else None
        if self.progress is not None and driver.total is None:
            with contextlib.suppress(TypeError):
                self.progress.total = len(source)  # type: ignore[arg-type]

    # -- outcomes ---------------------------------------------------------------------

    def _result(self, item: _Item, outcome: Outcome, context: dict[str, Any] | None = None) -> Result:
        driver = self.driver
        return Result(
            item.index,
            driver._id(item.index, item.input),
            item.input,
            outcome,
            context,
            tuple(item.errors),
            item.attempts,
        )

    def succeeded(self, item: _Item, context: dict[str, Any], *, emit: bool) -> Result | None:
        self.report.succeeded += 1
        self.restarts_in_row = 0
        if self.debug:
            self.log.debug("input.succeeded", input_id=self.driver._id(item.index, item.input), attempt=item.attempts)
        return self._result(item, Outcome.SUCCEEDED, context) if emit else None

    def failed(self, item: _Item, kind: ErrorKind, error: BaseException) -> Result | None:
        """Record a failed attempt; return a `Result` when the input is finished."""
        item.errors.append(error)
        input_id = self.driver._id(item.index, item.input)
        data: object = item.input
        if kind is ErrorKind.FAIL and not isinstance(data, Mapping):
            error = InvalidInput(f"input #{item.index} is a {type(item.input).__name__}, not a mapping")
            item.errors[-1] = error
        described = _log.describe_error(error)
        if kind is ErrorKind.STOP:
            self.report.stopped += 1
            self.restarts_in_row = 0
            self.log.info(
                "input.stopped", input_id=input_id, reason=getattr(error, "reason", None), attempt=item.attempts
            )
            return self._result(item, Outcome.STOPPED)
        if kind is ErrorKind.RETRY and not self.driver.retry.exhausted(item.attempts):
            delay = self.driver.retry.delay(item.attempts, error, self.driver.rng)
            self.report.retries += 1
            self.log.info(
                "input.retry", input_id=input_id, attempt=item.attempts, delay_s=round(delay, 3), error=described
            )
            item.due = self.clock.now() + delay
            if self.schedule:
                heapq.heappush(self.waiting, (item.due, item.index, item))
            return None
        if kind is ErrorKind.FATAL:
            return None  # the caller restarts and runs the input again
        self.restarts_in_row = 0
        self.report.dead_letters.append(result := self._result(item, Outcome.DEAD))
        self.log.error("input.dead", input_id=input_id, attempts=item.attempts, error=described)
        return result

    def restart_wait(self, item: _Item | None) -> bool:
        """Back off before a restart; ``False`` when restarts ran out (the driver stops)."""
        self.restarts_in_row += 1
        if self.restarts_in_row > self.driver.max_restarts:
            error = item.errors[-1] if item is not None and item.errors else None
            self.driver.stop(f"{self.restarts_in_row - 1} restarts in a row did not help")
            self.log.error(
                "driver.gave_up",
                restarts=self.restarts_in_row - 1,
                error=_log.describe_error(error) if error is not None else None,
            )
            return False
        delay = self.driver.restart.delay(self.restarts_in_row, None, self.driver.rng)
        error = item.errors[-1] if item is not None and item.errors else None
        self.log.warning(
            "driver.restart",
            input_id=self.driver._id(item.index, item.input) if item is not None else None,
            restart=self.restarts_in_row,
            delay_s=round(delay, 3),
            error=_log.describe_error(error) if error is not None else None,
        )
        self.clock.wait(self.driver._stop, delay)
        return not self.driver.stopping

    def restart(self) -> BaseException | None:
        """Restart every resource; the error if setting one up failed."""
        self.report.restarts += 1
        try:
            self.driver.resources.restart()
        except Exception as error:  # noqa: BLE001 - a failed restart is retried with backoff
            self.log.warning("driver.restart_failed", error=_log.describe_error(error))
            return error
        return None

    # -- reading inputs ---------------------------------------------------------------

    def next_input(self) -> _Item | None:
        """A due retry first, else the next input from the source, else ``None``."""
        waiting = self.waiting
        if waiting and waiting[0][0] <= self.clock.now():
            return heapq.heappop(waiting)[2]
        if self.exhausted:
            return None
        try:
            data = next(self.source)
        except StopIteration:
            self.exhausted = True
            return None
        return _Item(next(self.index), data)

    def wait_for_retry(self) -> bool:
        """Sleep until the earliest waiting retry is due; ``False`` if there is none."""
        if not self.waiting:
            return False
        delay = self.waiting[0][0] - self.clock.now()
        if delay > 0:
            self.clock.wait(self.driver._stop, delay)
        return True

    # -- the loops ----------------------------------------------------------------------

    def inline(self, *, emit: bool) -> Generator[Result, None, None]:  # noqa: C901, PLR0912 - one loop, kept flat for speed
        """One input at a time in this thread; the hot path of the common case."""
        driver = self.driver
        flow = driver.flow
        stop = driver._stop
        report = self.report
        progress = self.progress
        source = self.source
        waiting = self.waiting
        index = self.index
        debug = self.debug
        plain_ids = driver.input_id is None
        new_tuple, SUCCEEDED = tuple.__new__, Outcome.SUCCEEDED  # noqa: N806 - a local alias of a constant
        while not stop.is_set():
            if waiting or debug or progress is not None:
                item = self.next_input()
                if item is None:
                    if self.exhausted and self.wait_for_retry():
                        continue
                    break
                data = item.input
            else:
                # Fresh inputs, nothing waiting: no bookkeeping unless the input fails.
                try:
                    data = next(source)
                except StopIteration:
                    self.exhausted = True
                    break
                item = None
            try:
                context = flow(data)
            except Exception as error:  # noqa: BLE001 - every error is an outcome
                result = self.settle(item or _Item(next(index), data), error)
                if result is not None and emit:
                    yield result
            else:
                if item is None:
                    position = next(index)
                    report.succeeded += 1
                    self.restarts_in_row = 0
                    if emit:
                        key = position if plain_ids else driver._id(position, data)
                        yield new_tuple(Result, (position, key, data, SUCCEEDED, context, (), 1))
                else:
                    item.attempts += 1
                    result = self.succeeded(item, context, emit=emit)
                    if result is not None:
                        yield result
            if progress is not None:
                progress.tick(report)

    def settle(self, item: _Item, error: BaseException) -> Result | None:
        """After a failed inline attempt: retry later, dead-letter, or restart and rerun.

        Returns the `Result` when the input is finished, ``None`` when it waits for a
        retry or could not be processed (then it is in ``not_processed``).
        """
        driver = self.driver
        while True:
            item.attempts += 1
            kind = classify(error, retry_on=driver.retry_on, fatal_on=driver.fatal_on)
            result = self.failed(item, kind, error)
            if kind is not ErrorKind.FATAL:
                return result
            while True:  # restart until the resources come back, or give up
                if not self.restart_wait(item):
                    self.report.not_processed.append(self._result(item, Outcome.NOT_PROCESSED))
                    return None
                failure = self.restart()
                if failure is None:
                    break
                item.errors.append(failure)
            try:
                context = driver.flow(item.input)
            except Exception as again:  # noqa: BLE001 - every error is an outcome
                error = again
                continue
            item.attempts += 1
            return self.succeeded(item, context, emit=True)

    def pooled(self, *, emit: bool) -> Generator[Result, None, None]:  # noqa: C901, PLR0912, PLR0915
        """Batches of inputs on threads or an executor, a bounded number in flight."""
        driver = self.driver
        owned = None
        executor = driver.executor
        if executor is None:
            executor = owned = cf.ThreadPoolExecutor(driver.workers, thread_name_prefix="service-flow")
        in_flight: dict[cf.Future[Any], list[_Item]] = {}
        capacity = driver.workers * 2 if driver.remote or self.batch > 1 else driver.workers
        fatal: list[_Item] = []  # inputs waiting for a restart (thread pools restart here)
        sent = self.sent
        report = self.report
        try:
            while True:
                # Fill the pipeline unless stopping or waiting for in-flight work to drain.
                while not driver.stopping and not fatal and len(in_flight) < capacity:
                    batch: list[_Item] = []
                    while len(batch) < self.batch:
                        item = self.next_input()
                        if item is None:
                            break
                        batch.append(item)
                    if not batch:
                        break
                    self._submit(executor, batch, in_flight)
                if not in_flight:
                    if fatal and not driver.stopping:
                        if not self.restart_wait(fatal[0]):
                            break
                        failure = self.restart()
                        if failure is not None:
                            fatal[0].errors.append(failure)
                            continue
                        batch, fatal = fatal, []
                        self._submit(executor, batch, in_flight)
                        continue
                    # Nothing in flight: the source is read to its end (or we are
                    # stopping); only inputs waiting for a retry may remain.
                    if driver.stopping or not self.wait_for_retry():
                        break
                    continue
                timeout = None
                if self.waiting:
                    timeout = max(0.0, self.waiting[0][0] - self.clock.now())
                done, _ = cf.wait(in_flight, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    batch = in_flight.pop(future)
                    left = sent.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as error:  # noqa: BLE001 - the batch never reported back
                        self._lost(batch, error)
                        continue
                    raws: list[_Raw] = outcome
                    if driver.remote:
                        raws, worked = outcome
                        if driver.adaptive:
                            self._resize(len(batch), worked, time.perf_counter() - left)
                    for item, (kind, value) in zip(batch, raws):
                        item.attempts += 1
                        if kind is None:
                            result = self.succeeded(item, value, emit=emit)
                        else:
                            result = self.failed(item, kind, value)
                            if kind is ErrorKind.FATAL:
                                if driver.remote:  # the worker restarted its own copy
                                    self.report.restarts += 1
                                    if not self.restart_wait(item):
                                        report.not_processed.append(self._result(item, Outcome.NOT_PROCESSED))
                                        continue
                                    item.due = self.clock.now()
                                    heapq.heappush(self.waiting, (item.due, item.index, item))
                                else:
                                    fatal.append(item)
                                continue
                        if result is not None and emit:
                            yield result
                    if self.progress is not None:
                        self.progress.tick(report)
        finally:
            # Stopping: whatever was submitted has finished (the loop drains in_flight
            # before it breaks) except on an exception, where we must not lose track.
            for batch in in_flight.values():
                report.not_processed.extend(self._result(item, Outcome.NOT_PROCESSED) for item in batch)
            report.not_processed.extend(self._result(item, Outcome.NOT_PROCESSED) for item in fatal)
            if owned is not None:
                owned.shutdown(wait=True, cancel_futures=True)

    def _lost(self, batch: list[_Item], error: BaseException) -> None:
        """A batch whose worker died (or whose executor broke): one restart, then again."""
        for item in batch:
            item.attempts += 1
            item.errors.append(error)
        self.report.restarts += 1
        if not self.restart_wait(batch[0]):
            self.report.not_processed.extend(self._result(item, Outcome.NOT_PROCESSED) for item in batch)
            return
        for item in batch:
            item.due = self.clock.now()
            heapq.heappush(self.waiting, (item.due, item.index, item))

    def _submit(self, executor: cf.Executor, batch: list[_Item], in_flight: dict[cf.Future[Any], list[_Item]]) -> None:
        """Hand ``batch`` to ``executor``; an executor that refuses work stops the driver."""
        try:
            future = self._send(executor, batch)
        except Exception as error:  # e.g. a process pool broken by a dead worker
            self.report.not_processed.extend(self._result(item, Outcome.NOT_PROCESSED) for item in batch)
            self.log.exception("driver.executor_failed", error=_log.describe_error(error))
            self.driver.stop(f"the executor refused work: {_log.describe_error(error)}")
            return
        in_flight[future] = batch
        self.sent[future] = time.perf_counter()

    def _resize(self, size: int, worked: float, round_trip: float) -> None:
        """Size the next batches from how the last one went (an executor, ``batch_size=None``).

        Dispatch (the round trip less the work) should stay under a fifth of the work,
        and a batch should hold about a second of work at most, so that the last
        batches do not keep one worker busy while the others wait.
        """
        per_input = worked / size
        if per_input <= 0:
            wanted = _MAX_BATCH
        else:
            dispatch = max(round_trip - worked, 0.0)
            wanted = max(1, math.ceil(round(5 * dispatch / per_input, 6)))  # no 50.000001 -> 51
            wanted = min(wanted, max(1, int(_BATCH_WORK / per_input)))
        self.batch = max(1, min(wanted, self.batch * 4, _MAX_BATCH))

    def _send(self, executor: cf.Executor, batch: list[_Item]) -> cf.Future[Any]:
        driver = self.driver
        inputs = [item.input for item in batch]
        if driver.remote:
            return executor.submit(
                _run_remote_batch,
                driver._token,
                driver._flow_payload(),
                inputs,
                driver.retry_on,
                driver.fatal_on,
            )
        return executor.submit(_run_batch, driver.flow, inputs, driver.retry_on, driver.fatal_on)

    def finish(self) -> Report:
        report = self.report
        for _, _, item in sorted(self.waiting):
            report.not_processed.append(self._result(item, Outcome.NOT_PROCESSED))
        self.waiting.clear()
        report.not_processed.sort(key=lambda result: result.position)
        if not self.exhausted:
            report.unread = self.source
        if self.driver.stopping:
            report.stop_reason = self.driver._stop_reason
        report.duration = self.clock.now() - self.started
        if self.progress is not None:
            self.progress.done(report)
        level = self.log.warning if report.stop_reason or report.dead_letters else self.log.info
        level(
            "driver.finished", duration_s=round(report.duration, 3), stop_reason=report.stop_reason, **report.counts()
        )
        return report


@contextlib.contextmanager
def _signals(driver: Driver) -> Iterator[None]:
    """SIGINT/SIGTERM stop the driver gracefully while it runs (main thread only)."""
    if not driver.handle_signals or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: types.FrameType | None) -> None:
        name = signal.Signals(signum).name
        if driver.stopping:  # the second signal: stop at once
            signal.signal(signum, previous.get(signum, signal.SIG_DFL))
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        # Only set the flag: the handler may run in the middle of a log call holding
        # the logger's lock (logging here deadlocked); driver.finished says why it stopped.
        driver.stop(f"received {name}")

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        previous[stop_signal] = signal.signal(stop_signal, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


# -- asyncio -------------------------------------------------------------------------------


class _AsyncDrive:
    """`Driver.arun`: one task per input, at most ``concurrency`` flows running at once."""

    def __init__(self, driver: Driver, inputs: Iterable[Input] | AsyncIterable[Input], concurrency: int) -> None:
        self.driver = driver
        self.inputs = inputs
        self.slots = asyncio.Semaphore(concurrency)
        self.state = _State(driver, iter(()))
        self.state.schedule = False  # each task sleeps for its own retries
        self.gate = asyncio.Event()  # cleared while the processor restarts
        self.running = 0
        self.idle = asyncio.Condition()

    async def run(self) -> Report:
        driver, state = self.driver, self.state
        driver._begin()
        self.gate.set()
        tasks: set[asyncio.Task[None]] = set()
        index = itertools.count()
        inputs = self.inputs
        if isinstance(inputs, AsyncIterable):
            source: Any = inputs.__aiter__()
            take = source.__anext__
            end: type[Exception] = StopAsyncIteration
        else:
            source = iter(inputs)
            take = _async_next(source)
            end = StopAsyncIteration
        if state.debug:
            state.log.debug("driver.started", workers=self.slots._value)
        try:
            while not driver.stopping:
                await self.slots.acquire()
                if driver._stop.is_set():
                    self.slots.release()
                    break
                try:
                    data = await take()
                except end:
                    self.slots.release()
                    state.exhausted = True
                    break
                task = asyncio.ensure_future(self._process(_Item(next(index), data)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        state.source = source
        return state.finish()

    async def _process(self, item: _Item) -> None:
        """Run one input to its outcome; the caller acquired a slot for it."""
        driver, state = self.driver, self.state
        try:
            while True:
                await self.gate.wait()
                if driver.stopping:
                    state.report.not_processed.append(state._result(item, Outcome.NOT_PROCESSED))
                    return
                item.attempts += 1
                self.running += 1
                try:
                    context = driver.flow(item.input)
                    if driver.flow.is_async:
                        context = await context
                except Exception as error:  # noqa: BLE001 - every error is an outcome
                    kind: ErrorKind | None = classify(error, retry_on=driver.retry_on, fatal_on=driver.fatal_on)
                    assert kind is not None  # noqa: S101 - classify always decides
                    result = state.failed(item, kind, error)
                else:
                    kind, result = None, state.succeeded(item, context, emit=True)
                finally:
                    self.running -= 1
                    async with self.idle:
                        self.idle.notify_all()
                if result is not None:
                    if driver.on_result is not None:
                        driver.on_result(result)
                    return
                if kind is ErrorKind.FATAL:
                    if not await self._restart(item):
                        state.report.not_processed.append(state._result(item, Outcome.NOT_PROCESSED))
                        return
                    continue
                # A retry: wait for it without holding a slot.
                self.slots.release()
                try:
                    await driver.clock.asleep(item.due - driver.clock.now())
                finally:
                    await self.slots.acquire()
        finally:
            self.slots.release()

    async def _restart(self, item: _Item) -> bool:
        """Close the gate, let running flows finish, restart the resources, reopen."""
        if not self.gate.is_set():  # another task is restarting: its restart serves us too
            await self.gate.wait()
            return not self.driver.stopping
        self.gate.clear()
        state = self.state
        try:
            async with self.idle:
                await self.idle.wait_for(lambda: self.running == 0)
            while True:
                state.restarts_in_row += 1
                if state.restarts_in_row > self.driver.max_restarts:
                    self.driver.stop(f"{state.restarts_in_row - 1} restarts in a row did not help")
                    state.log.error("driver.gave_up", restarts=state.restarts_in_row - 1)
                    return False
                delay = self.driver.restart.delay(state.restarts_in_row, None, self.driver.rng)
                state.log.warning("driver.restart", restart=state.restarts_in_row, delay_s=round(delay, 3))
                await self.driver.clock.asleep(delay)
                failure = state.restart()
                if failure is None:
                    return not self.driver.stopping
                item.errors.append(failure)
        finally:
            self.gate.set()


def _async_next(source: Iterator[Input]) -> Callable[[], Any]:
    async def take() -> Input:
        try:
            return next(source)
        except StopIteration:
            raise StopAsyncIteration from None

    return take
