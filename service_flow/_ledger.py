"""The bookkeeping of one drive: the inputs it must remember, their outcomes, restarts.

Every loop (inline, threads, executors, asyncio) records through a `Ledger`, so an input
ends the same way wherever it ran: the retry budget and the restart budget are those of
the driver's `service_flow.policy.Steering`, counted per input.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from service_flow import _log
from service_flow._progress import Progress
from service_flow.exceptions import InvalidInput
from service_flow.policy import ErrorKind
from service_flow.report import Input, Outcome, Report, Result

if TYPE_CHECKING:
    from collections.abc import Iterator

    from service_flow.driver import Driver

__all__ = ["Item", "Ledger", "attach_report", "check_source", "fresh", "plain"]

# Values a service cannot change in place: an input holding only these needs no deep copy.
_ATOMS = frozenset({str, int, float, bool, type(None), bytes, complex})


def plain(data: object) -> bool:
    """Whether ``data`` is a dict of values no service can change in place (cheap)."""
    if type(data) is not dict:
        return False
    atoms = _ATOMS
    for value in data.values():  # noqa: SIM110 - a loop is the cheapest check
        if type(value) not in atoms:
            return False
    return True


def fresh(data: Input) -> dict[str, Any]:
    """A copy of ``data`` for one attempt: nested lists, dicts and objects copied too.

    Each attempt must start from the input as it was given, whatever the attempt before
    did to its context.  A value that cannot be deep-copied (a lock, a socket) is passed
    as it is.
    """
    if plain(data):
        return dict(data)
    try:
        return copy.deepcopy(dict(data))
    except Exception:  # noqa: BLE001 - copy what can be copied, share the rest
        copied: dict[str, Any] = {}
        for key, value in data.items():
            try:
                copied[key] = copy.deepcopy(value)
            except Exception:  # noqa: BLE001, PERF203 - shared as it is
                copied[key] = value
        return copied


def check_source(inputs: object, method: str, *, aio: bool = False) -> None:
    """Refuse, with `InvalidInput` naming ``method``, what is not a stream of inputs.

    One mapping, a string or bytes would be iterated into keys or characters, each a
    dead letter: they are refused too (``[mapping]`` runs one input).
    """
    if isinstance(inputs, (Mapping, str, bytes)):
        msg = f"{method} takes an iterable of inputs (mappings), got one {type(inputs).__name__}"
        if isinstance(inputs, Mapping):
            msg += ": pass [inputs] to process one input"
        raise InvalidInput(msg)
    if isinstance(inputs, Iterable) or (aio and isinstance(inputs, AsyncIterable)):
        return
    with contextlib.suppress(TypeError):
        iter(inputs)  # type: ignore[call-overload] # a sequence with __getitem__ only
        return
    kinds = "an iterable or an async iterable" if aio else "an iterable"
    msg = f"{method} takes {kinds} of inputs (mappings), got {type(inputs).__name__}"
    raise InvalidInput(msg)


def attach_report(error: BaseException, report: Report | None) -> None:
    """Hang ``report`` on ``error`` as ``error.report`` (what was done before it was raised)."""
    if report is None or getattr(error, "report", None) is report:
        return
    with contextlib.suppress(AttributeError, TypeError):  # an exception without a __dict__
        error.report = report  # type: ignore[attr-defined]
    note = getattr(error, "add_note", None)
    if note is not None:
        note(f"service_flow: the driver's report is in `.report`: {report}")


def _silent(*_args: object, **_fields: object) -> None:
    """An event nobody configured logging to see."""


class Item:
    """An input the driver has to remember: it failed at least once, or it is in flight."""

    __slots__ = ("attempts", "due", "errors", "index", "input", "restarts")

    def __init__(self, index: int, data: Input) -> None:
        self.index = index
        self.input = data
        self.attempts = 0
        self.errors: list[BaseException] = []
        self.due = 0.0  # when a retry may run, on the driver's clock
        self.restarts = 0  # restarts in a row this input's Fatal attempts caused

    def __lt__(self, other: Item) -> bool:  # heap order among equal due times
        return self.index < other.index


class Ledger:
    """The bookkeeping of one run: counts, waiting retries, restarts, the source."""

    def __init__(self, driver: Driver, source: Iterator[Input]) -> None:
        self.driver = driver
        self.steering = driver.steering
        self.source = source
        self.clock = driver.clock
        self.report = Report(flow=driver.flow.name)
        self.started = driver.clock.now()
        self.index = itertools.count()
        self.waiting: list[tuple[float, int, Item]] = []  # (due, index, item): a heap
        self.exhausted = False
        self.source_error: BaseException | None = None
        self.schedule = True  # push retries on `waiting` (the async loop sleeps per task)
        self.log = _log.logger().bind(flow=driver.flow.name)
        self.debug = _log.debug_logger() is not None
        # Unconfigured, structlog prints every event to stdout: an application that set
        # nothing up sees only what went wrong for good (errors, and the closing warning
        # of a run that is not ok), never the info and warnings of a run that recovered.
        configured = structlog.is_configured()
        self.info = self.log.info if configured else _silent
        self.warning = self.log.warning if configured else _silent
        self.progress = Progress(driver.total, driver.clock) if driver.progress else None
        if self.progress is not None and driver.total is None:
            with contextlib.suppress(TypeError):
                self.progress.total = len(source)  # type: ignore[arg-type]

    # -- outcomes ---------------------------------------------------------------------

    def result(self, item: Item, outcome: Outcome, context: dict[str, Any] | None = None) -> Result:
        return Result(
            item.index,
            self.driver._id(item.index, item.input),  # noqa: SLF001 - the driver's own helper
            item.input,
            outcome,
            context,
            tuple(item.errors),
            item.attempts,
        )

    def not_processed(self, items: Iterable[Item]) -> None:
        self.report.not_processed.extend(self.result(item, Outcome.NOT_PROCESSED) for item in items)

    def interrupted(self, item: Item, interrupt: BaseException) -> None:
        """An attempt ended by something that ends the run (a second Ctrl-C): not processed."""
        item.attempts += 1
        item.errors.append(interrupt)
        self.not_processed([item])

    def succeeded(self, item: Item, context: dict[str, Any], *, emit: bool) -> Result | None:
        self.report.succeeded += 1
        if self.debug:
            self.log.debug("input.succeeded", input_id=self.driver._id(item.index, item.input), attempt=item.attempts)  # noqa: SLF001
        return self.result(item, Outcome.SUCCEEDED, context) if emit else None

    def failed(self, item: Item, kind: ErrorKind, error: BaseException) -> Result | None:
        """Record a failed attempt; return a `Result` when the input is finished.

        ``None`` when it waits: for its retry (then ``item.due`` says when) or, on
        `Fatal`, for the restart the caller makes.
        """
        item.errors.append(error)
        if kind is ErrorKind.FATAL:
            return None  # the caller restarts and runs the input again
        item.restarts = 0  # the run of Fatal attempts is broken
        input_id = self.driver._id(item.index, item.input)  # noqa: SLF001
        data: object = item.input
        if kind is ErrorKind.FAIL and not isinstance(data, Mapping):
            error = InvalidInput(f"input #{item.index} is a {type(item.input).__name__}, not a mapping")
            item.errors[-1] = error
        described = _log.describe_error(error)
        if kind is ErrorKind.STOP:
            self.report.stopped += 1
            self.info("input.stopped", input_id=input_id, reason=getattr(error, "reason", None), attempt=item.attempts)
            return self.result(item, Outcome.STOPPED)
        if kind is ErrorKind.RETRY:
            delay = self.steering.retry_delay(item.attempts, error, self.driver.rng)
            if delay is not None:
                self.report.retries += 1
                self.info(
                    "input.retry", input_id=input_id, attempt=item.attempts, delay_s=round(delay, 3), error=described
                )
                item.due = self.clock.now() + delay
                if self.schedule:
                    heapq.heappush(self.waiting, (item.due, item.index, item))
                return None
        self.report.dead_letters.append(result := self.result(item, Outcome.DEAD))
        self.log.error("input.dead", input_id=input_id, attempts=item.attempts, error=described)
        return result

    def settle(self, item: Item, kind: ErrorKind | None, value: Any) -> None:
        """Record an attempt that came back after the loop was abandoned (no retry, no restart)."""
        item.attempts += 1
        if kind is None:
            self.succeeded(item, value, emit=False)
            return
        if kind in (ErrorKind.RETRY, ErrorKind.FATAL):
            item.errors.append(value)
            self.not_processed([item])
            return
        self.failed(item, kind, value)

    # -- restarts ---------------------------------------------------------------------

    def restart_due(self, items: list[Item], *, announce: bool = True) -> float | None:
        """Count a restart for each input waiting for it; the backoff before it.

        ``None`` when one of them used up its restarts in a row: the driver stops (the
        caller lists the inputs as not processed).
        """
        first = max(items, key=lambda item: item.restarts)
        for item in items:
            item.restarts += 1
        delay = self.steering.restart_delay(first.restarts, self.driver.rng)
        error = first.errors[-1] if first.errors else None
        described = _log.describe_error(error) if error is not None else None
        if delay is None:
            self.driver.stop(self.steering.gave_up(first.restarts))
            self.log.error("driver.gave_up", restarts=first.restarts - 1, error=described)
        elif announce:
            self.warning(
                "driver.restart",
                input_id=self.driver._id(first.index, first.input),  # noqa: SLF001
                restart=first.restarts,
                delay_s=round(delay, 3),
                error=described,
            )
        return delay

    def restart_wait(self, items: list[Item]) -> bool:
        """`restart_due`, then sleep the backoff; ``False`` when the driver gave up or stops."""
        delay = self.restart_due(items)
        if delay is None:
            return False
        self.clock.wait(self.driver._stop, delay)  # noqa: SLF001
        return not self.driver.stopping

    def restart(self) -> BaseException | None:
        """Restart every resource; the error if setting one up failed."""
        self.report.restarts += 1
        try:
            self.driver.resources.restart()
        except Exception as error:  # noqa: BLE001 - a failed restart is retried with backoff
            self.warning("driver.restart_failed", error=_log.describe_error(error))
            return error
        return None

    def restart_here(self, items: list[Item]) -> bool:
        """Back off and restart until the resources come back; ``False`` when the driver gave up."""
        while True:
            if not self.restart_wait(items):
                return False
            failure = self.restart()
            if failure is None:
                return True
            for item in items:
                item.errors.append(failure)

    # -- reading inputs ---------------------------------------------------------------

    def read(self) -> Item | None:
        """The next input of the source, else ``None`` (read to its end, or it failed)."""
        if self.exhausted or self.source_error is not None:
            return None
        try:
            data = next(self.source)
        except StopIteration:
            self.exhausted = True
            return None
        except Exception as error:  # noqa: BLE001 - re-raised once the run is wound up
            self.source_failed(error)
            return None
        return Item(next(self.index), data)

    def source_failed(self, error: BaseException) -> None:
        """The source raised: stop reading, finish what is in flight, raise it at the end."""
        self.source_error = error
        self.driver.stop(f"the input source raised {_log.describe_error(error)}")

    def next_input(self) -> Item | None:
        """A due retry first, else the next input from the source, else ``None``."""
        waiting = self.waiting
        if waiting and waiting[0][0] <= self.clock.now():
            return heapq.heappop(waiting)[2]
        return self.read()

    def requeue(self, items: Iterable[Item], delay: float = 0.0) -> None:
        """Inputs to run again after ``delay`` (after a restart, or never started)."""
        due = self.clock.now() + delay
        for item in items:
            item.due = due
            heapq.heappush(self.waiting, (due, item.index, item))

    def wait_for_retry(self) -> bool:
        """Sleep until the earliest waiting retry is due; ``False`` if there is none."""
        if not self.waiting:
            return False
        delay = self.waiting[0][0] - self.clock.now()
        if delay > 0:
            self.clock.wait(self.driver._stop, delay)  # noqa: SLF001
        return True

    # -- the end ------------------------------------------------------------------------

    def finish(self) -> Report:
        report = self.report
        self.not_processed(item for _, _, item in sorted(self.waiting))
        self.waiting.clear()
        report.not_processed.sort(key=lambda result: result.position)
        if not self.exhausted:
            report.unread = self.source
        report.stop_reason = self.driver._consume_stop()  # noqa: SLF001
        report.duration = self.clock.now() - self.started
        if self.progress is not None:
            self.progress.done(report)
        counts = report.counts()
        if report.stop_reason or report.dead_letters:
            self.log.warning(
                "driver.finished", duration_s=round(report.duration, 3), stop_reason=report.stop_reason, **counts
            )
        else:
            self.info("driver.finished", duration_s=round(report.duration, 3), stop_reason=None, **counts)
        return report
