"""A progress line for long driver runs: counts, rate and time left."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from service_flow.clock import Clock
    from service_flow.report import Report


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class Progress:
    """Writes one line about every ``every`` seconds of the driver's clock."""

    def __init__(self, total: int | None, clock: Clock, stream: TextIO | None = None, every: float = 1.0) -> None:
        self.total = total
        self.clock = clock
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.started = self.last = clock.now()

    def line(self, report: Report) -> str:
        elapsed = self.clock.now() - self.started
        done = report.processed
        rate = done / elapsed if elapsed > 0 else 0.0
        text = (
            f"{report.flow}: {done:,} done ({report.succeeded:,} succeeded, {report.stopped:,} stopped, "
            f"{report.dead:,} dead, {report.retries:,} retries, {report.restarts:,} restarts), {rate:,.0f}/s"
        )
        if self.total:
            text += f", {done / self.total:.0%}"
            if rate > 0:
                text += f", ETA {_duration((self.total - done) / rate)}"
        return text

    def tick(self, report: Report) -> None:
        now = self.clock.now()
        if now - self.last >= self.every:
            self.last = now
            self.stream.write(self.line(report) + "\n")
            self.stream.flush()

    def done(self, report: Report) -> None:
        self.stream.write(self.line(report) + "\n")
        self.stream.flush()
