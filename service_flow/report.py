"""What a driver run gives back: one `Result` per input and the `Report` of the whole run.

Every input read from the source ends in exactly one `Outcome`; the `Report` counts them,
keeps the dead letters and what was not processed, and hands back the unread rest of the
source.  `Driver.run`, `Driver.iter` and `Driver.arun` build them (``service_flow.driver``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["Input", "Outcome", "Report", "Result"]

Input = Mapping[str, Any]
"""One input of a driver: a mapping of context keys."""


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
