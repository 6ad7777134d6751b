"""Limits on how hard services may hit a server: a rate and a number of calls in flight.

Both are used the same way from threads and from asyncio tasks::

    api_rate = RateLimit(10, per=1.0)          # at most 10 calls in any 1 s window
    in_flight = ConcurrencyLimit(4)            # at most 4 calls at once

    with api_rate, in_flight:                  # in a thread
        session.get(url)

    async with api_rate, in_flight:            # in a task
        await client.get(url)

One limit object may be shared by several services and clients, across the threads of
a driver, and kept for many runs.  Limits pickle (a flow sent to a process pool takes
its limits along): each process then gets a fresh limit of the same size, so a limit
holds *per process*.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import TYPE_CHECKING, Any

from typing_extensions import Self

from service_flow.clock import SYSTEM_CLOCK, Clock
from service_flow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["ConcurrencyLimit", "RateLimit"]


class RateLimit:
    """At most ``calls`` acquisitions in any window of ``per`` seconds (a sliding window).

    Each acquisition reserves the earliest free moment under a lock, then waits for it
    outside the lock (through ``clock``), so waiting callers go in arrival order and a
    burst after a quiet spell passes at once.  Leaving the ``with`` block does nothing:
    what is limited is how often calls start.

    >>> from service_flow.testing import FakeClock
    >>> clock = FakeClock()
    >>> limit = RateLimit(2, per=1.0, clock=clock)
    >>> for _ in range(5):
    ...     with limit:
    ...         pass
    >>> clock.sleeps
    [1.0, 1.0]
    """

    def __init__(self, calls: int, per: float, clock: Clock = SYSTEM_CLOCK) -> None:
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            msg = f"RateLimit: calls must be a whole number of at least 1, got {calls!r}"
            raise ConfigurationError(msg)
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not per > 0:
            msg = f"RateLimit: per must be a positive number of seconds, got {per!r}"
            raise ConfigurationError(msg)
        self.calls = calls
        self.per = float(per)
        self.clock = clock
        self._setup()

    def _setup(self) -> None:
        self._lock = threading.Lock()
        # The moments granted to the last `calls` acquisitions, oldest first.
        self._granted: collections.deque[float] = collections.deque(maxlen=self.calls)

    def _reserve(self) -> float:
        """Reserve the next free moment; the seconds to wait until it."""
        with self._lock:
            now = self.clock.now()
            granted = self._granted
            moment = now if len(granted) < self.calls else max(now, granted[0] + self.per)
            granted.append(moment)  # maxlen drops the oldest
            return moment - now

    def acquire(self) -> None:
        """Wait (blocking the thread) until one more call fits in the window."""
        self.clock.sleep(self._reserve())

    async def acquire_async(self) -> None:
        """Wait (suspending the task) until one more call fits in the window.

        A task cancelled while it waits leaves its moment unused, never given twice.
        """
        await self.clock.asleep(self._reserve())

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def __aenter__(self) -> Self:
        await self.acquire_async()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def __getstate__(self) -> dict[str, Any]:
        return {"calls": self.calls, "per": self.per, "clock": self.clock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def __repr__(self) -> str:
        return f"RateLimit({self.calls}, per={self.per!r})"


class _ThreadWaiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def hand_over(self, limit: ConcurrencyLimit) -> bool:  # noqa: ARG002 - same signature as _TaskWaiter's
        self.event.set()
        return True


class _TaskWaiter:
    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def hand_over(self, limit: ConcurrencyLimit) -> bool:
        if self.future.done():  # cancelled: pass the slot on
            return False
        try:
            self.loop.call_soon_threadsafe(self._wake, limit)
        except RuntimeError:  # its loop is closed
            return False
        return True

    def _wake(self, limit: ConcurrencyLimit) -> None:
        if self.future.done():  # cancelled after the slot was handed over: give it back
            limit.release()
        else:
            self.future.set_result(None)


class ConcurrencyLimit:
    """At most ``max_in_flight`` holders at once, whether threads or asyncio tasks.

    A caller that finds the limit full waits for a holder to leave, in arrival order; a
    freed slot goes straight to the next waiter.  A thread waits by blocking, a task by
    suspending (the event loop keeps running).
    """

    def __init__(self, max_in_flight: int) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            msg = f"ConcurrencyLimit: max_in_flight must be a whole number of at least 1, got {max_in_flight!r}"
            raise ConfigurationError(msg)
        self.max_in_flight = max_in_flight
        self._setup()

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: collections.deque[_ThreadWaiter | _TaskWaiter] = collections.deque()

    @property
    def in_flight(self) -> int:
        """How many holders there are now."""
        return self._in_flight

    def acquire(self) -> None:
        """Take a slot, blocking the thread until one is free."""
        with self._lock:
            if self._in_flight < self.max_in_flight and not self._waiters:
                self._in_flight += 1
                return
            waiter = _ThreadWaiter()
            self._waiters.append(waiter)
        waiter.event.wait()  # the releaser counted us in before waking us

    async def acquire_async(self) -> None:
        """Take a slot, suspending the task until one is free."""
        with self._lock:
            if self._in_flight < self.max_in_flight and not self._waiters:
                self._in_flight += 1
                return
            waiter = _TaskWaiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release()  # the slot arrived just as we were cancelled
            else:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                # Otherwise it was handed over and _wake gives it back.
            raise

    def release(self) -> None:
        """Give a slot back: to the first waiter, or to the pool."""
        with self._lock:
            while self._waiters:
                if self._waiters.popleft().hand_over(self):
                    return
            if self._in_flight <= 0:
                raise ConfigurationError("ConcurrencyLimit released more often than acquired")
            self._in_flight -= 1

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    async def __aenter__(self) -> Self:
        await self.acquire_async()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __getstate__(self) -> dict[str, Any]:
        return {"max_in_flight": self.max_in_flight}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def __repr__(self) -> str:
        return f"ConcurrencyLimit({self.max_in_flight})"
