r"""The record of one run of a flow: `Run`, its `StepRecord`\\ s and its `RunStatus`.

``flow.run(context)`` returns a `Run`.  The run loop only adds raw data to one flat
list, three items per event: ``index, result, time`` (a plan adds those of a run of
steps in one go, in the order they ended).  No tuple per step, nothing for
the garbage collector to track but the results themselves; the records, names and key
provenance are built when somebody reads them:

- a step that returned: its index, the mapping it returned (or ``None``), its end; it
  started when the event before it ended (the run's start for the first);
- a step that raised: its index, a `Failure`, its end;
- an around service starting: ``AROUND_STARTS - index``, ``None``, ``None`` (it starts
  where the last event ended; its own event comes after the steps it wraps);
- ``call_next()`` starting the rest: `MARK`, ``None``, the time;
- a step an around service skipped (it never called ``call_next``, or swallowed an
  exception the rest raised before the step): its index, `SKIPPED`, the time.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Mapping, Sequence
from itertools import count
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from service_flow.exceptions import StopFlow

if TYPE_CHECKING:
    from service_flow._plan import Plan, StepInfo

__all__ = ["Run", "RunStatus", "StepRecord"]

# Run ids: a random prefix per process and a counter, formatted only when read.  Unique
# across processes without paying for a uuid4 on every run.
_PROCESS_PREFIX = os.urandom(4).hex()
RUN_NUMBERS = count(1)  # next() on a count is atomic under the GIL: safe across threads
# A run that logs nothing gets its number when somebody first reads it.
_NUMBERING = threading.Lock()


def format_run_id(number: int) -> str:
    """The run id logs and `Run.run_id` show for run *number* of this process."""
    return f"{_PROCESS_PREFIX}-{number:x}"


class RunStatus(str, enum.Enum):
    """How a run or a step ended.  Compares equal to its string value."""

    SUCCEEDED = "succeeded"
    STOPPED = "stopped"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Only for a step: an around service returned without calling ``call_next``, or
    swallowed an exception the rest raised before reaching the step."""

    def __str__(self) -> str:
        return self.value


class StepRecord(NamedTuple):
    """What one step did in a run."""

    position: int
    """The step's position among the flow's steps and forks, depth first, branches included."""
    name: str
    """The service's name."""
    status: RunStatus
    """`RunStatus.SUCCEEDED`, ``STOPPED``/``FAILED`` for the step that ended the run, or
    ``SKIPPED`` for a step an around service left out (it never called ``call_next``, or
    swallowed an exception raised before the step)."""
    duration: float
    """Seconds the step took (an around service's include the steps it wrapped)."""
    keys: tuple[str, ...]
    """The keys of the mapping it returned, merged into the context."""
    error: BaseException | None
    """The exception it raised, if any."""
    branch: str
    """The fork branches that led to it, like ``payment='card'``; empty on the main line."""


class Failure:
    """Stands in the raw records where a step raised instead of returning."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


#: The raw records of a run: a flat list, three items per event (see the module's doc).
Records = list[Any]
#: The index of a time mark: ``call_next()`` starting the rest of the flow.
MARK = -1
#: Around service *i* starting is written with the index ``AROUND_STARTS - i``.
AROUND_STARTS = -2


class _Skipped:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIPPED"


#: The result of a step an around service skipped.
SKIPPED: Any = _Skipped()

# (start, index, result, end, order): one event read back; an around service's order is
# that of its start, so that it comes before the steps it wraps even at an equal start.
_Event = tuple[float, int, Any, float, int]


def write(records: Records, index: int, result: Any, time: float | None) -> None:
    """Append one event to *records* (item by item: a tracer logs each event it completes)."""
    records.append(index)
    records.append(result)
    records.append(time)


class RecordReader:
    """Reads raw records back, event by event, giving each step its start time."""

    __slots__ = ("count", "prev", "starts")

    def __init__(self, started: float) -> None:
        self.prev = started
        self.count = 0  # events read: with the start, the order in which steps started
        self.starts: dict[int, list[tuple[float, int]]] = {}

    def read(self, index: int, result: Any, end: float) -> _Event | None:
        """The step's (start, index, result, end, order), or ``None`` for a mark."""
        self.count += 1
        if index < 0:
            if index == MARK:
                self.prev = end
            else:
                self.starts.setdefault(AROUND_STARTS - index, []).append((self.prev, self.count))
            return None
        if result is SKIPPED:
            return (end, index, result, end, self.count)
        waiting = self.starts.get(index)
        start, order = waiting.pop() if waiting else (self.prev, self.count)
        self.prev = end
        return (start, index, result, end, order)


def read_records(raw: Records, started: float) -> list[_Event]:
    """Every step event of *raw*, in the order they were written."""
    reader = RecordReader(started)
    events = []
    for position in range(0, len(raw) - 2, 3):
        event = reader.read(raw[position], raw[position + 1], raw[position + 2])
        if event is not None:
            events.append(event)
    return events


class Run:
    """The outcome of ``flow.run(context)``: status, final context, step records, error."""

    # One tuple holds the state: building a Run must cost next to nothing, since every
    # flow.run() builds one.  (plan, number, context, raw records, error, started, ended)
    __slots__ = ("_number", "_records", "_state")

    def __init__(self, state: _State) -> None:
        self._state = state

    @property
    def status(self) -> RunStatus:
        """How the run ended: succeeded, stopped (`StopFlow`) or failed."""
        error = self._state[4]
        if error is None:
            return RunStatus.SUCCEEDED
        return RunStatus.STOPPED if isinstance(error, StopFlow) else RunStatus.FAILED

    @property
    def context(self) -> dict[str, Any]:
        """The final context: what ``flow(context)`` returns, or what there was when it ended."""
        return self._state[2]

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped or failed the run, or ``None``."""
        return self._state[4]

    @property
    def number(self) -> int:
        """The run's number within this process (given when first asked, if not logged)."""
        number = self._state[1]
        if number:
            return number
        try:
            return self._number
        except AttributeError:
            pass
        with _NUMBERING:
            try:
                return self._number
            except AttributeError:
                self._number: int = next(RUN_NUMBERS)
                return self._number

    @property
    def started(self) -> float:
        """``time.perf_counter()`` when the run started."""
        return self._state[5]

    @property
    def ended(self) -> float:
        """``time.perf_counter()`` when the run ended."""
        return self._state[6]

    @property
    def flow(self) -> str:
        """The flow's name."""
        return self._state[0].flow_name

    @property
    def run_id(self) -> str:
        """The id this run's log events carry."""
        return format_run_id(self.number)

    @property
    def succeeded(self) -> bool:
        """Every step ran to the end."""
        return self._state[4] is None

    @property
    def stopped(self) -> bool:
        """A step raised `StopFlow`."""
        return self.status is RunStatus.STOPPED

    @property
    def failed(self) -> bool:
        """A step raised any other exception (``error``)."""
        return self.status is RunStatus.FAILED

    @property
    def reason(self) -> str | None:
        """Why a stopped run stopped (the `StopFlow` message)."""
        return self.error.reason if isinstance(self.error, StopFlow) else None

    @property
    def duration(self) -> float:
        """Seconds the run took."""
        return self.ended - self.started

    @property
    def steps(self) -> tuple[StepRecord, ...]:
        """A record per step that ran, in the order the steps started."""
        try:
            return self._records
        except AttributeError:  # not built yet
            pass
        infos = self._state[0].steps
        ordered = sorted(read_records(self._state[3], self.started), key=_start_time)  # stable
        self._records: tuple[StepRecord, ...] = tuple(
            _record(event, infos[event[1]], self.context) for event in ordered
        )
        return self._records

    @property
    def failed_step(self) -> StepRecord | None:
        """The step that raised the exception which ended the run, or ``None``.

        When the exception went through around services, this is the innermost step.
        """
        error = self._state[4]
        if error is None:
            return None
        for event in read_records(self._state[3], self.started):  # the innermost first
            result = event[2]
            if type(result) is Failure and result.error is error:
                return _record(event, self._state[0].steps[event[1]], self.context)
        return None

    def set_by(self, key: str) -> str | None:
        """The name of the step whose returned mapping last set *key*.

        ``None`` when no step returned it: it came with the input, was set in place by a
        step that takes the whole context, or is not in the context at all (as a key that
        cannot be hashed never is).
        """
        try:
            hash(key)
        except Exception:  # noqa: BLE001 - whatever its __hash__ raises, no result holds it
            return None
        return provenance(key, self._state[3], self._state[0].steps)

    def __repr__(self) -> str:
        ms = self.duration * 1000
        tail = f": {self.error!r}" if self.error is not None else ""
        steps = len(self.steps)
        return f"<Run {self.run_id} of {self.flow!r} {self.status.value} in {ms:.3f} ms, {steps} steps{tail}>"


_State = tuple["Plan", int, dict[str, Any], Records, "BaseException | None", float, float]
_make = object.__new__


def new_run(state: _State) -> Run:
    """A `Run` of *state*, built without the cost of calling ``__init__``."""
    run: Run = _make(Run)
    run._state = state  # noqa: SLF001 - the constructor, written out
    return run


_start_time = itemgetter(0, 4)


def _record(event: _Event, info: StepInfo, context: Mapping[str, Any]) -> StepRecord:
    start, index, result, end, _ = event
    if type(result) is Failure:
        status = RunStatus.STOPPED if isinstance(result.error, StopFlow) else RunStatus.FAILED
        return StepRecord(index, info.name, status, end - start, (), result.error, info.branch)
    if result is SKIPPED:
        return StepRecord(index, info.name, RunStatus.SKIPPED, 0.0, (), None, info.branch)
    keys = tuple(result) if isinstance(result, Mapping) and result is not context else ()
    return StepRecord(index, info.name, RunStatus.SUCCEEDED, end - start, keys, None, info.branch)


def provenance(key: str, raw: Records, steps: Sequence[StepInfo]) -> str | None:
    """Which step last returned *key*, from a run's raw records (``None``: no step did)."""
    best: tuple[float, str] | None = None
    for index, result, end in zip(raw[0::3], raw[1::3], raw[2::3]):
        if index >= 0 and isinstance(result, Mapping) and key in result and (best is None or end >= best[0]):
            best = (end, steps[index].name)
    return None if best is None else best[1]
