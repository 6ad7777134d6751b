"""The fake clock: time that moves only when something sleeps on it.

`FakeClock` replaces the real clock wherever the library takes a ``clock=``: sleeping
advances its time instantly and every wait is recorded, so tests of retries, backoff,
polling and rate limits are fast and deterministic.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A clock whose time moves only when something sleeps on it (or `advance` is called).

    >>> clock = FakeClock()
    >>> clock.sleep(1.5)
    >>> clock.now(), clock.sleeps
    (1.5, [1.5])
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        """Every duration slept or waited, in order (zero-length sleeps are not recorded)."""

    def now(self) -> float:
        """The fake time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the time forward without recording a sleep."""
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Advance the time by ``seconds`` at once and record the sleep."""
        if seconds <= 0:
            return
        with self._lock:
            self._now += seconds
            self.sleeps.append(seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Return at once: ``True`` if ``event`` is set, else advance by ``timeout``."""
        if event.is_set():
            return True
        self.sleep(timeout)
        return event.is_set()

    async def asleep(self, seconds: float) -> None:
        """Advance like `sleep`, yielding to the event loop once."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    @property
    def slept(self) -> float:
        """Total time slept."""
        return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r}, sleeps={len(self.sleeps)})"
