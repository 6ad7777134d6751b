r"""The record of one run of a flow: `Run`, its `StepRecord`\\ s and its `RunStatus`.

``flow.run(context)`` returns a `Run`.  The run loop only appends raw tuples; the
records, names and key provenance are built when somebody reads them.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from itertools import count
from typing import TYPE_CHECKING, Any, NamedTuple

from service_flow.exceptions import StopFlow

if TYPE_CHECKING:
    from service_flow._compile import Plan, StepInfo

__all__ = ["Run", "RunStatus", "StepRecord"]

# Run ids: a random prefix per process and a counter, formatted only when read.  Unique
# across processes without paying for a uuid4 on every run.
_PROCESS_PREFIX = os.urandom(4).hex()
RUN_NUMBERS = count(1)  # next() on a count is atomic under the GIL: safe across threads


def format_run_id(number: int) -> str:
    """The run id logs and `Run.run_id` show for run *number* of this process."""
    return f"{_PROCESS_PREFIX}-{number:x}"


class RunStatus(str, enum.Enum):
    """How a run or a step ended.  Compares equal to its string value."""

    SUCCEEDED = "succeeded"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class StepRecord(NamedTuple):
    """What one step did in a run."""

    position: int
    """The step's position among the flow's steps and forks, depth first, branches included."""
    name: str
    """The service's name."""
    status: RunStatus
    """`RunStatus.SUCCEEDED`, or ``STOPPED``/``FAILED`` for the step that ended the run."""
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


# A raw record, as the plan appends it: (step index, start, end, result or Failure).
RawRecord = tuple[int, float, float, Any]


class Run:
    """The outcome of ``flow.run(context)``: status, final context, step records, error."""

    # One tuple holds the state: building a Run must cost next to nothing, since every
    # flow.run() builds one.  (plan, number, context, raw records, error, started, ended)
    __slots__ = ("_records", "_state")

    def __init__(
        self, state: tuple[Plan, int, dict[str, Any], Sequence[RawRecord], BaseException | None, float, float]
    ) -> None:
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
        """The run's number within this process."""
        return self._state[1]

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
        ordered = sorted(self._state[3], key=_start_time)
        self._records: tuple[StepRecord, ...] = tuple(_record(raw, infos[raw[0]], self.context) for raw in ordered)
        return self._records

    @property
    def failed_step(self) -> StepRecord | None:
        """The step that raised the exception which ended the run, or ``None``.

        When the exception went through around services, this is the innermost step.
        """
        error = self._state[4]
        if error is None:
            return None
        for raw in self._state[3]:
            if isinstance(raw[3], Failure) and raw[3].error is error:
                return _record(raw, self._state[0].steps[raw[0]], self.context)
        return None

    def set_by(self, key: str) -> str | None:
        """The name of the step whose returned mapping last set *key*.

        ``None`` when no step returned it: it came with the input, was set in place by a
        step that takes the whole context, or is not in the context at all.
        """
        return provenance(key, self._state[3], self._state[0].steps)

    def __repr__(self) -> str:
        ms = self.duration * 1000
        tail = f": {self.error!r}" if self.error is not None else ""
        steps = len(self._state[3])
        return f"<Run {self.run_id} of {self.flow!r} {self.status.value} in {ms:.3f} ms, {steps} steps{tail}>"


def _start_time(raw: RawRecord) -> float:
    return raw[1]


def _record(raw: RawRecord, info: StepInfo, context: Mapping[str, Any]) -> StepRecord:
    index, start, end, result = raw
    if isinstance(result, Failure):
        status = RunStatus.STOPPED if isinstance(result.error, StopFlow) else RunStatus.FAILED
        return StepRecord(index, info.name, status, end - start, (), result.error, info.branch)
    keys = tuple(result) if isinstance(result, Mapping) and result is not context else ()
    return StepRecord(index, info.name, RunStatus.SUCCEEDED, end - start, keys, None, info.branch)


def provenance(key: str, raw: Sequence[RawRecord], steps: Sequence[StepInfo]) -> str | None:
    """Which step last returned *key*, from a run's raw records (``None``: no step did)."""
    best: tuple[float, str] | None = None
    for index, _start, end, result in raw:
        if isinstance(result, Mapping) and key in result and (best is None or end >= best[0]):
            best = (end, steps[index].name)
    return None if best is None else best[1]
