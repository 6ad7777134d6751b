"""`Driver.arun`'s loop: one task per input, at most ``concurrency`` flows running at once.

It records through the same `service_flow._ledger.Ledger` as the sync loops, so an input
ends the same way under ``arun`` as inline: the same retry delays, the same restart
budget per input, the same report.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, Mapping
from typing import TYPE_CHECKING, Any, Callable

from service_flow import _log
from service_flow._ledger import Item, Ledger, attach_report, fresh
from service_flow.policy import ErrorKind

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from service_flow.driver import Driver
    from service_flow.report import Input, Report, Result

__all__ = ["AsyncDrive"]


class AsyncDrive:
    """`Driver.arun`: one task per input, at most ``concurrency`` flows running at once."""

    def __init__(self, driver: Driver, inputs: Iterable[Input] | AsyncIterable[Input], concurrency: int) -> None:
        self.driver = driver
        self.inputs = inputs
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self.ledger = Ledger(driver, iter(()))
        self.ledger.schedule = False  # each task sleeps for its own retries
        self.gate = asyncio.Event()  # cleared while the processor restarts
        self.running = 0
        self.idle = asyncio.Condition()
        self.failure: BaseException | None = None  # what on_result raised first
        self.stopped = asyncio.Event()  # set by driver.stop(), from any thread

    async def run(self) -> Report:  # noqa: C901 - each way a run ends
        driver, ledger = self.driver, self.ledger
        self.gate.set()
        loop = asyncio.get_running_loop()
        driver._wake = lambda: loop.call_soon_threadsafe(self.stopped.set)  # noqa: SLF001
        if driver.stopping:
            self.stopped.set()
        tasks: set[asyncio.Task[None]] = set()
        index = itertools.count()
        source, take = _open(self.inputs)
        if ledger.debug:
            ledger.log.debug("driver.started", workers=self.concurrency)
        interrupted: BaseException | None = None
        try:
            while not driver.stopping:
                await self.slots.acquire()
                if driver.stopping:  # set by stop() while we waited
                    self.slots.release()  # type: ignore[unreachable]
                    break
                try:
                    data = await take()
                except StopAsyncIteration:
                    self.slots.release()
                    ledger.exhausted = True
                    break
                except Exception as error:  # noqa: BLE001 - raised again once the run is wound up
                    self.slots.release()
                    ledger.source_failed(error)
                    break
                task = asyncio.ensure_future(self._process(Item(next(index), data)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(self._ended)
            if tasks:
                await asyncio.gather(*tasks)
        except BaseException as error:  # noqa: BLE001 - re-raised below; cancelled, interrupted: what runs ends as not processed
            interrupted = error
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        driver._wake = None  # noqa: SLF001
        ledger.source = source
        report = ledger.finish()
        raised = interrupted or self.failure or ledger.source_error
        if raised is not None:
            attach_report(raised, report)
            raise raised
        return report

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A task that raised (a clock, a resource's restart...) ends the run like ``on_result`` raising."""
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self.failure is None:
            self.failure = error
            self.driver.stop(f"processing an input raised {_log.describe_error(error)}")

    def _deliver(self, result: Result) -> None:
        on_result = self.driver.on_result
        if on_result is None or self.failure is not None:
            return
        try:
            on_result(result)
        except Exception as error:  # noqa: BLE001 - raised by arun once the run is wound up
            self.failure = error
            self.driver.stop(f"on_result raised {_log.describe_error(error)}")

    async def _process(self, item: Item) -> None:
        """Run one input to its outcome; the caller acquired a slot for it."""
        driver, ledger = self.driver, self.ledger
        flow = driver.flow
        finished = False
        try:
            while True:
                await self.gate.wait()
                if driver.stopping:
                    break
                item.attempts += 1
                self.running += 1
                try:
                    context = flow(fresh(item.input) if isinstance(item.input, Mapping) else item.input)
                    if flow.is_async:
                        context = await context
                except Exception as error:  # noqa: BLE001 - every error is an outcome
                    kind: ErrorKind | None = driver.steering.classify(error)
                    assert kind is not None  # noqa: S101 - classify always decides
                    result = ledger.failed(item, kind, error)
                else:
                    kind, result = None, ledger.succeeded(item, context, emit=True)
                finally:
                    self.running -= 1
                    async with self.idle:
                        self.idle.notify_all()
                if result is not None:
                    finished = True
                    self._deliver(result)
                    return
                if kind is ErrorKind.FATAL:
                    if not await self._restart(item):
                        break
                    continue
                # A retry: wait for it without holding a slot (a stop ends the wait).
                self.slots.release()
                try:
                    await self._sleep(item.due - driver.clock.now())
                finally:
                    await self.slots.acquire()
        finally:
            if not finished:
                ledger.not_processed([item])
            self.slots.release()

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the driver's clock, or until the driver is stopped."""
        if self.stopped.is_set():
            return
        sleeper = asyncio.ensure_future(self.driver.clock.asleep(seconds))
        stopper = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if sleeper.done():
                sleeper.result()  # a clock that raised: the run ends with its error
        finally:
            sleeper.cancel()
            stopper.cancel()

    async def _restart(self, item: Item) -> bool:
        """Close the gate, let running flows finish, restart the resources, reopen."""
        ledger = self.ledger
        if not self.gate.is_set():  # another task is restarting: its restart serves us too
            if ledger.restart_due([item], announce=False) is None:
                return False
            await self.gate.wait()
            return not self.driver.stopping
        self.gate.clear()
        try:
            async with self.idle:
                await self.idle.wait_for(lambda: self.running == 0)
            while True:
                delay = ledger.restart_due([item])
                if delay is None:
                    return False
                await self._sleep(delay)
                if self.driver.stopping:
                    return False
                failure = ledger.restart()
                if failure is None:
                    return not self.driver.stopping
                item.errors.append(failure)
        finally:
            self.gate.set()


def _open(inputs: Iterable[Input] | AsyncIterable[Input]) -> tuple[Any, Callable[[], Any]]:
    """The source, and the coroutine function taking its next input."""
    if isinstance(inputs, AsyncIterable):
        source = inputs.__aiter__()
        return source, source.__anext__
    iterator = iter(inputs)
    return iterator, _async_next(iterator)


def _async_next(source: Iterator[Input]) -> Callable[[], Any]:
    async def take() -> Input:
        try:
            return next(source)
        except StopIteration:
            raise StopAsyncIteration from None

    return take
