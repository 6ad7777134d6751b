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
                   then the same input runs again; restarts back off too, and when an
                   input's attempt after ``max_restarts`` restarts in a row raises
                   `Fatal` again, the driver stops and reports every input it did not
                   process (the budget is the input's: see `service_flow.policy.Steering`)
anything else      a *dead letter* (``retry_on``/``fatal_on`` turn given exception
                   types into retries or restarts)
=================  ==============================================================

Each attempt runs on an untouched copy of the input, nested values included.  Whatever
ends a run early (``on_result`` or the source raising) propagates with the `Report` in
its ``report`` attribute.

Inputs stream: the driver reads the iterable lazily and keeps only what it must (dead
letters, inputs waiting for a retry), so a generator of a million mappings runs in
constant memory.  Work runs inline (``workers=1``), on ``workers`` threads, or on any
`concurrent.futures.Executor` (a process pool, Dask's ``client.get_executor()``) in
batches.  `Driver.arun` is the asyncio counterpart for async flows.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import inspect
import itertools
import pickle
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Union

from service_flow import _log
from service_flow._ledger import Item, Ledger, attach_report, check_source, fresh
from service_flow._remote import BatchSizer, decode, encode_input, run_local_batch, run_remote_batch
from service_flow.clock import SYSTEM_CLOCK, Clock
from service_flow.exceptions import ConfigurationError, FlowError
from service_flow.flow import Flow
from service_flow.policy import ErrorKind, RetryPolicy, Steering, number_problem
from service_flow.report import Input, Outcome, Report, Result
from service_flow.resources import Resources

if TYPE_CHECKING:
    import types
    from collections.abc import AsyncIterable, Generator

    from typing_extensions import Self

__all__ = ["Drive", "Driver", "Outcome", "Report", "Result"]

InputId = Union[str, Callable[[Input], Any], None]

_ATOMS = frozenset({str, int, float, bool, type(None), bytes, complex})  # as _ledger.plain


def _option_problems(  # noqa: PLR0913 - one check per option
    *,
    workers: object,
    executor: object,
    batch_size: object,
    input_id: object,
    on_result: object,
    clock: object,
    seed: object,
    progress: object,
    total: object,
    handle_signals: object,
) -> list[str | None]:
    def flag(name: str, value: object) -> str | None:
        return None if isinstance(value, bool) else f"{name} takes True or False, got {value!r}"

    return [
        number_problem("workers", workers, minimum=1, integer=True),
        None if batch_size is None else number_problem("batch_size", batch_size, minimum=1, integer=True),
        None
        if executor is None or isinstance(executor, cf.Executor)
        else f"executor takes a concurrent.futures.Executor, got {executor!r}",
        None
        if input_id is None or type(input_id) is str or callable(input_id)
        else f"input_id takes a key of the inputs (a str) or a function of an input, got {input_id!r}",
        None if on_result is None or callable(on_result) else f"on_result must be callable, got {on_result!r}",
        None if isinstance(clock, Clock) else f"clock takes a service_flow.Clock, got {clock!r}",
        None
        if seed is None or (isinstance(seed, int) and not isinstance(seed, bool))
        else f"seed takes an int (or None), got {seed!r}",
        flag("progress", progress),
        None if total is None else number_problem("total", total, integer=True),
        flag("handle_signals", handle_signals),
    ]


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
        the backoff between restarts after `Fatal`; an input may cause ``max_restarts``
        restarts in a row (its attempts raising `Fatal` one after the other): when its
        attempt after the last of them raises `Fatal` again, the driver gives up.
    ``retry_on`` / ``fatal_on``
        exception types (one class, or several) to treat as `Retry` / `Fatal`.
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
        retry_on: type[BaseException] | Iterable[type[BaseException]] = (),
        fatal_on: type[BaseException] | Iterable[type[BaseException]] = (),
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
        self.steering = Steering.of(
            f"Driver for flow {self.flow.name!r}",
            retry=retry,
            restart=restart,
            max_restarts=max_restarts,
            retry_on=retry_on,
            fatal_on=fatal_on,
            problems=_option_problems(
                workers=workers,
                executor=executor,
                batch_size=batch_size,
                input_id=input_id,
                on_result=on_result,
                clock=clock,
                seed=seed,
                progress=progress,
                total=total,
                handle_signals=handle_signals,
            ),
        )
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
        if self.remote:
            self._check_pickles()
        self.resources = Resources.of(self.flow)
        self._stop = threading.Event()
        self._stopping = False  # the event's flag, read on the hot path
        self._stop_reason: str | None = None
        self._token = uuid.uuid4().hex
        self._flow_bytes: bytes | None = None
        self._submissions = itertools.count()
        self._wake: Callable[[], object] | None = None

    def __repr__(self) -> str:
        return f"Driver({self.flow.name!r}, workers={self.workers})"

    @property
    def retry(self) -> RetryPolicy:
        """The `RetryPolicy` for `Retry` and the types of ``retry_on``."""
        return self.steering.retry

    @property
    def restart(self) -> RetryPolicy:
        """The backoff between restarts after `Fatal`."""
        return self.steering.restart

    @property
    def max_restarts(self) -> int:
        """How many restarts in a row an input may cause before the driver gives up."""
        return self.steering.max_restarts

    @property
    def retry_on(self) -> tuple[type[BaseException], ...]:
        """Exception types treated as `Retry`."""
        return self.steering.retry_on

    @property
    def fatal_on(self) -> tuple[type[BaseException], ...]:
        """Exception types treated as `Fatal`."""
        return self.steering.fatal_on

    # -- public ------------------------------------------------------------------------

    def run(self, inputs: Iterable[Input]) -> Report:
        """Process every input and return the `Report` (see the class docstring).

        Whatever ends the run early (``on_result`` or the source raising, a second
        Ctrl-C) propagates with the `Report` of what was done in its ``report``
        attribute; the signal handlers are restored in every case.
        """
        on_result = self.on_result
        self._check_sync()
        check_source(inputs, "Driver.run")
        drive = Drive(self, inputs, emit=on_result is not None)
        try:
            if on_result is None:
                for _ in drive._gen:
                    pass
            else:
                for result in drive._gen:
                    on_result(result)
        except BaseException as error:
            if drive.report is None:  # raised out here, by on_result: wind the run up
                drive.close(f"on_result raised {_log.describe_error(error)}")
            attach_report(error, drive.report)
            raise
        assert drive.report is not None  # noqa: S101 - set when the iteration ends
        return drive.report

    def iter(self, inputs: Iterable[Input]) -> Drive:
        """Process the inputs lazily, yielding each `Result` as it completes.

        The `Drive` returned has the `Report` in ``.report`` once it is exhausted or
        closed (``drive.close()``, or use it as a context manager).  ``on_result``, when
        set, is called with each result before it is yielded, as in `run`.
        """
        self._check_sync()
        check_source(inputs, "Driver.iter")
        return Drive(self, inputs, emit=True)

    def stop(self, reason: str = "stop() was called") -> None:
        """Finish the inputs in flight, start no new ones, and end the run (thread-safe).

        Called while no run is going, it applies to the next run, which then stops at
        once, reading nothing (its report hands the whole source back in ``unread``).
        Each run consumes the stop that ended it: the run after starts afresh.
        """
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stopping = True
            self._stop.set()
            wake = self._wake
            if wake is not None:  # an arun sleeping through a retry delay
                wake()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for (`stop`, a signal) and not yet consumed by a run."""
        return self._stopping

    async def arun(self, inputs: Iterable[Input] | AsyncIterable[Input], concurrency: int | None = None) -> Report:
        """Process every input with an async flow, ``concurrency`` (default ``workers``) at a time.

        Like `run`, an error that ends it early carries the `Report` in ``report``.
        """
        from service_flow._adrive import AsyncDrive

        check_source(inputs, "Driver.arun", aio=True)
        if concurrency is not None:
            problem = number_problem("concurrency", concurrency, minimum=1, integer=True)
            if problem is not None:
                msg = f"Driver for flow {self.flow.name!r}: arun: {problem}"
                raise ConfigurationError(msg)
        return await AsyncDrive(self, inputs, concurrency or self.workers).run()

    # -- shared by the loops ----------------------------------------------------------

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

    def _consume_stop(self) -> str | None:
        """The reason of the stop that ended a run (``None``: none did); the next run starts afresh."""
        if not self._stop.is_set():
            return None
        reason = self._stop_reason
        self._stop_reason = None
        self._stopping = False
        self._stop.clear()
        return reason

    def _check_pickles(self) -> None:
        """Refuse, when it is given, an executor whose worker processes cannot get the flow."""
        try:
            pickle.dumps(self.flow)
        except Exception as error:
            msg = (
                f"Driver for flow {self.flow.name!r}: executor runs the flow in other processes, "
                f"and the flow cannot be pickled: {_log.describe_error(error)} (module-level functions "
                "and services pickle; lambdas and local functions do not)"
            )
            raise ConfigurationError(msg) from error

    def _flow_payload(self) -> bytes:
        if self._flow_bytes is None:
            self._flow_bytes = pickle.dumps(self.flow)
        return self._flow_bytes


class Drive(Iterator[Result]):
    """One run of a `Driver` over some inputs, iterated for its results.

    ``report`` holds the `Report` once the drive is exhausted or closed.  An error that
    ends it early (the source raising) propagates with the report in its ``report``
    attribute.
    """

    def __init__(self, driver: Driver, inputs: Iterable[Input], *, emit: bool) -> None:
        self.driver = driver
        self._ended: list[Report] = []  # filled by the generator, which must not hold self
        # (a cycle would keep an abandoned drive, and its signal handlers, until the
        # collector runs; without one, dropping the drive closes the generator at once)
        self._source = iter(inputs)
        self._gen = _generate(driver, self._source, self._ended, emit=emit)

    @property
    def report(self) -> Report | None:
        """The `Report`, once the drive is exhausted or closed (else ``None``)."""
        return self._ended[0] if self._ended else None

    def __next__(self) -> Result:
        try:
            result = next(self._gen)
        except StopIteration:
            raise
        except BaseException as error:  # interrupted: the report was ended on the way out
            attach_report(error, self.report)
            raise
        on_result = self.driver.on_result
        if on_result is not None:  # called as in run(), before the result is handed out
            try:
                on_result(result)
            except BaseException as error:
                self.close(f"on_result raised {_log.describe_error(error)}")
                attach_report(error, self.report)
                raise
        return result

    def close(self, reason: str = "the drive was closed before its end") -> None:
        """Stop: finish what is in flight (outcomes counted, no more results), end the report."""
        if self.report is None and inspect.getgeneratorstate(self._gen) == inspect.GEN_CREATED:
            # Never started: nothing ran, nothing was read; the report hands the source back.
            self._gen.close()
            self._ended.append(Report(flow=self.driver.flow.name, unread=self._source, stop_reason=reason))
            return
        if self.report is None:
            self.driver.stop(reason)
        self._gen.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _generate(
    driver: Driver, source: Iterator[Input], ended: list[Report], *, emit: bool
) -> Generator[Result, None, None]:
    ledger = Ledger(driver, source)
    try:
        with _signals(driver):
            if ledger.debug:
                ledger.log.debug("driver.started", workers=driver.workers, remote=driver.remote)
            if driver.executor is None and driver.workers == 1:
                yield from _inline(driver, ledger, emit=emit)
            else:
                yield from _Pool(driver, ledger).run(emit=emit)
    finally:
        ended.append(ledger.finish())
    if ledger.source_error is not None:
        attach_report(ledger.source_error, ended[0])
        raise ledger.source_error


# -- inline ------------------------------------------------------------------------------


def _attempt(flow: Flow, data: Input) -> dict[str, Any]:
    """One attempt on a fresh copy of ``data`` (not a mapping: the flow refuses it)."""
    return flow(fresh(data) if isinstance(data, Mapping) else data)  # type: ignore[no-any-return]


def _inline(driver: Driver, ledger: Ledger, *, emit: bool) -> Generator[Result, None, None]:  # noqa: C901, PLR0912, PLR0915 - one loop, kept flat for speed
    """One input at a time in this thread; the hot path of the common case."""
    flow = driver.flow
    plan = flow._plan(aio=False, record=False)
    entry, annotate = plan.entry, plan.annotate
    report = ledger.report
    progress = ledger.progress
    source = ledger.source
    waiting = ledger.waiting
    index = ledger.index
    slow = ledger.debug or progress is not None
    plain_ids = driver.input_id is None
    atoms = _ATOMS
    new_tuple, SUCCEEDED = tuple.__new__, Outcome.SUCCEEDED  # noqa: N806 - a local alias of a constant
    while not driver._stopping:
        if waiting or slow:
            item = ledger.next_input()
            if item is None:
                if ledger.exhausted and ledger.wait_for_retry():
                    continue
                break
            try:
                context = _attempt(flow, item.input)
            except Exception as error:  # noqa: BLE001 - every error is an outcome
                result = _settle(driver, ledger, item, error)
            except BaseException as interrupt:  # a second Ctrl-C: the input is not lost
                ledger.interrupted(item, interrupt)
                raise
            else:
                item.attempts += 1
                result = ledger.succeeded(item, context, emit=emit)
            if result is not None and emit:
                yield result
            if progress is not None:
                progress.tick(report)
            continue
        # Fresh inputs, nothing waiting: no bookkeeping unless an input fails.
        succeeded = 0
        try:
            for data in source:
                position = next(index)
                try:
                    if type(data) is dict:
                        for value in data.values():
                            if type(value) not in atoms:
                                context = _attempt(flow, data)
                                break
                        else:
                            context = data.copy()
                            entry(context)
                    else:
                        context = _attempt(flow, data)
                except Exception as error:  # noqa: BLE001 - every error is an outcome
                    if type(data) is dict:
                        annotate(error)
                    result = _settle(driver, ledger, Item(position, data), error)
                    if result is not None and emit:
                        yield result
                    if waiting or driver._stopping:
                        break
                    continue
                except BaseException as interrupt:  # a second Ctrl-C: the input is not lost
                    ledger.interrupted(Item(position, data), interrupt)
                    raise
                succeeded += 1
                if emit:
                    key = position if plain_ids else driver._id(position, data)
                    yield new_tuple(Result, (position, key, data, SUCCEEDED, context, (), 1))
                if driver._stopping:  # stop() sets it meanwhile
                    break  # type: ignore[unreachable]
            else:
                ledger.exhausted = True
        except Exception as error:  # noqa: BLE001 - raised by the source: re-raised at the end
            ledger.source_failed(error)
        finally:
            report.succeeded += succeeded
        if ledger.exhausted and not waiting:
            break


def _settle(driver: Driver, ledger: Ledger, item: Item, error: BaseException) -> Result | None:
    """After a failed inline attempt: retry later, dead-letter, or restart and rerun.

    Returns the `Result` when the input is finished, ``None`` when it waits for a
    retry or could not be processed (then it is in ``not_processed``).
    """
    steering = driver.steering
    while True:
        item.attempts += 1
        kind = steering.classify(error)
        result = ledger.failed(item, kind, error)
        if kind is not ErrorKind.FATAL:
            return result
        try:
            restarted = ledger.restart_here([item])
        except BaseException:  # interrupted while it waits for its restart
            ledger.not_processed([item])
            raise
        if not restarted:
            ledger.not_processed([item])
            return None
        try:
            context = _attempt(driver.flow, item.input)
        except Exception as again:  # noqa: BLE001 - every error is an outcome
            error = again
            continue
        except BaseException as interrupt:
            ledger.interrupted(item, interrupt)
            raise
        item.attempts += 1
        return ledger.succeeded(item, context, emit=True)


# -- threads and executors ------------------------------------------------------------


class _Pool:
    """Batches of inputs on threads or an executor, a bounded number in flight."""

    def __init__(self, driver: Driver, ledger: Ledger) -> None:
        self.driver = driver
        self.ledger = ledger
        self.sizer = BatchSizer(driver.batch_size, adaptive=driver.adaptive)
        self.in_flight: dict[cf.Future[Any], list[Item]] = {}
        self.sent: dict[cf.Future[Any], float] = {}  # when each batch left, for sizing
        self.fatal: list[Item] = []  # inputs waiting for a restart (thread pools restart here)

    def run(self, *, emit: bool) -> Generator[Result, None, None]:  # noqa: C901, PLR0912, PLR0915 - one loop
        driver, ledger = self.driver, self.ledger
        owned = None
        executor = driver.executor
        if executor is None:
            executor = owned = cf.ThreadPoolExecutor(driver.workers, thread_name_prefix="service-flow")
        in_flight, fatal = self.in_flight, self.fatal
        capacity = driver.workers * 2 if driver.remote or self.sizer.size > 1 else driver.workers
        clean = False
        try:
            while True:
                # Fill the pipeline unless stopping or waiting for in-flight work to drain.
                while not driver.stopping and not fatal and len(in_flight) < capacity:
                    batch: list[Item] = []
                    while len(batch) < self.sizer.size:
                        item = ledger.next_input()
                        if item is None:
                            break
                        batch.append(item)
                    if not batch:
                        break
                    for result in self._submit(executor, batch):
                        if emit:
                            yield result
                if not in_flight:
                    if fatal and not driver.stopping:
                        waited = list(fatal)  # kept in `fatal` until restarted: an interrupt loses none
                        restarted = ledger.restart_here(waited)
                        fatal.clear()
                        if restarted:
                            ledger.requeue(waited)
                        else:
                            ledger.not_processed(waited)
                        continue
                    # Nothing in flight: the source is read to its end (or we are
                    # stopping); only inputs waiting for a retry may remain.
                    if driver.stopping or not ledger.wait_for_retry():
                        break
                    continue
                timeout = None
                if ledger.waiting:
                    timeout = max(0.0, ledger.waiting[0][0] - ledger.clock.now())
                done, _ = cf.wait(in_flight, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    for result in self._collect(future):
                        if emit:
                            yield result
                if ledger.progress is not None:
                    ledger.progress.tick(ledger.report)
            clean = True
        except (Exception, GeneratorExit):
            # Closed early (on_result raised, or the caller stopped iterating): what is in
            # flight still finishes and is counted, without results handed out.
            self._abandon(wait=True)
            raise
        finally:
            if not clean:
                self._abandon(wait=False)
            ledger.not_processed(self.fatal)
            self.fatal.clear()
            if owned is not None:
                owned.shutdown(wait=clean, cancel_futures=True)

    def _collect(self, future: cf.Future[Any]) -> Iterator[Result]:  # noqa: C901 - each way a batch ends
        """The outcomes of a batch that came back."""
        driver, ledger = self.driver, self.ledger
        batch = self.in_flight.pop(future)
        left = self.sent.pop(future)
        try:
            outcome = future.result()
        except Exception as error:  # noqa: BLE001 - the batch never reported back
            self._lost(batch, error)
            return
        raws = outcome
        if driver.remote:
            raws, worked = outcome
            if driver.adaptive:
                self.sizer.resize(len(batch), worked, time.perf_counter() - left)
            raws = [decode(kind, value) for kind, value in raws]
        for item, (kind, value) in zip(batch, raws):
            item.attempts += 1
            if kind is None:
                result = ledger.succeeded(item, value, emit=True)
            else:
                result = ledger.failed(item, kind, value)
                if kind is ErrorKind.FATAL:
                    if not driver.remote:
                        self.fatal.append(item)
                        continue
                    if item.restarts < driver.steering.max_restarts:  # the worker restarted its copy
                        ledger.report.restarts += 1
                    # Its backoff is its own: the other workers go on meanwhile.
                    delay = ledger.restart_due([item])
                    if delay is None:
                        ledger.not_processed([item])
                    else:
                        ledger.requeue([item], delay)
                    continue
            if result is not None:
                yield result
        ledger.requeue(batch[len(raws) :])  # after a Fatal: not run, sent again

    def _lost(self, batch: list[Item], error: BaseException) -> None:
        """A batch whose worker died (or whose executor broke): one restart, then again."""
        for item in batch:
            item.attempts += 1
            item.errors.append(error)
        self.ledger.report.restarts += 1
        if self.ledger.restart_wait(batch):
            self.ledger.requeue(batch)
        else:
            self.ledger.not_processed(batch)

    def _abandon(self, *, wait: bool) -> None:
        """Account for what is still in flight when the loop ends early."""
        in_flight, ledger = self.in_flight, self.ledger
        if wait and in_flight:
            cf.wait(in_flight)
        for future, batch in list(in_flight.items()):
            del in_flight[future]
            raws: list[Any] = []
            if future.done() and not future.cancelled() and future.exception() is None:
                raws = future.result()
                if self.driver.remote:
                    raws = [decode(kind, value) for kind, value in raws[0]]
            for item, (kind, value) in zip(batch, raws):
                ledger.settle(item, kind, value)
            ledger.not_processed(batch[len(raws) :])
            if not future.done():
                future.cancel()

    def _submit(self, executor: cf.Executor, batch: list[Item]) -> list[Result]:
        """Hand ``batch`` to ``executor``; returns the dead letters of inputs that cannot travel.

        An executor that refuses work stops the driver.
        """
        driver, ledger = self.driver, self.ledger
        results: list[Result] = []
        try:
            if driver.remote:
                payloads: list[bytes] = []
                kept: list[Item] = []
                for item in batch:
                    payload = encode_input(item.input)
                    if isinstance(payload, BaseException):
                        item.attempts += 1
                        result = ledger.failed(item, ErrorKind.FAIL, payload)
                        if result is not None:
                            results.append(result)
                        continue
                    payloads.append(payload)
                    kept.append(item)
                batch = kept
                if not batch:
                    return results
                future: cf.Future[Any] = executor.submit(
                    run_remote_batch,
                    driver._token,
                    driver._flow_payload(),
                    payloads,
                    driver.retry_on,
                    driver.fatal_on,
                    [item.restarts < driver.steering.max_restarts for item in batch],
                    next(driver._submissions),
                )
            else:
                inputs = [item.input for item in batch]
                future = executor.submit(run_local_batch, driver.flow, inputs, driver.retry_on, driver.fatal_on)
        except Exception as error:  # e.g. a process pool broken by a dead worker
            ledger.not_processed(batch)
            ledger.log.exception("driver.executor_failed", error=_log.describe_error(error))
            driver.stop(f"the executor refused work: {_log.describe_error(error)}")
            return results
        self.in_flight[future] = batch
        self.sent[future] = time.perf_counter()
        return results


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
