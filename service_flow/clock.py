"""The clock: how the library reads the time and waits.

Everything in service_flow that sleeps or measures elapsed time (the driver's backoff,
HTTP polling, rate limits) does it through a `Clock`, so tests swap in
`service_flow.testing.FakeClock` and run retries and timeouts instantly, without
monkeypatching `time.sleep`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from typing_extensions import Protocol, runtime_checkable

if TYPE_CHECKING:
    import threading

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the library needs from time: a monotonic reading and ways to wait."""

    def now(self) -> float:
        """Seconds on a monotonic clock (only differences are meaningful)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``; ``0`` returns at once."""
        ...

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass; return whether it was set."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` without blocking the event loop."""
        ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.sleep`, `asyncio.sleep`."""

    def now(self) -> float:
        """Seconds on `time.monotonic`."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """`time.sleep`, skipped entirely for zero or negative durations."""
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """`threading.Event.wait` with a timeout."""
        return event.wait(max(timeout, 0.0))

    async def asleep(self, seconds: float) -> None:
        """`asyncio.sleep`, skipped entirely for zero or negative durations."""
        if seconds > 0:
            await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SYSTEM_CLOCK"


SYSTEM_CLOCK: Clock = SystemClock()
"""The clock used wherever none is given."""
