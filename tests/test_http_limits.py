import asyncio
import pickle
import threading
import time

import pytest

from service_flow import ConfigurationError
from service_flow.http.limits import ConcurrencyLimit, RateLimit
from service_flow.testing import FakeClock


def max_in_any_window(moments, per):
    """The most moments falling in any half-open window [t, t + per)."""
    moments = sorted(moments)
    return max(sum(1 for m in moments[i:] if m < start + per) for i, start in enumerate(moments))


# --- RateLimit ---------------------------------------------------------------------------


def test_rate_limit_lets_a_burst_through_then_spaces_calls():
    clock = FakeClock()
    limit = RateLimit(3, per=1.0, clock=clock)
    moments = []
    for _ in range(10):
        with limit:
            moments.append(clock.now())
    assert moments[:3] == [0.0, 0.0, 0.0]
    assert max_in_any_window(moments, 1.0) == 3
    assert moments == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]


def test_rate_limit_window_slides():
    clock = FakeClock()
    limit = RateLimit(2, per=10.0, clock=clock)
    limit.acquire()  # t=0
    clock.advance(6)
    limit.acquire()  # t=6
    clock.advance(5)  # t=11: the first call left the window, the second has not
    limit.acquire()
    assert clock.sleeps == []
    limit.acquire()  # must wait until t=16, ten seconds after the call at 6
    assert clock.now() == 16.0
    assert clock.sleeps == [5.0]


def test_rate_limit_after_a_quiet_spell_does_not_wait():
    clock = FakeClock()
    limit = RateLimit(1, per=0.5, clock=clock)
    limit.acquire()
    clock.advance(100)
    limit.acquire()
    assert clock.sleeps == []


def test_rate_limit_holds_across_threads():
    calls, per, threads, each = 4, 0.1, 6, 4
    limit = RateLimit(calls, per=per)
    moments = []
    lock = threading.Lock()

    def work():
        for _ in range(each):
            with limit, lock:
                moments.append(time.monotonic())

    started = time.monotonic()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    elapsed = time.monotonic() - started
    assert len(moments) == threads * each
    # 24 calls at 4 per 0.1 s: the 21st cannot start before 0.5 s.  Scheduling noise only
    # makes calls later, so this lower bound is safe on a busy machine.
    assert elapsed >= (threads * each // calls - 1) * per * 0.99
    assert moments[-1] - started >= 0.5 * 0.99


def test_rate_limit_in_sequential_awaits_sleeps_through_the_clock():
    clock = FakeClock()
    limit = RateLimit(2, per=1.0, clock=clock)

    async def main():
        for _ in range(5):
            async with limit:
                pass

    asyncio.run(main())
    assert clock.sleeps == [1.0, 1.0]


def test_rate_limit_holds_across_tasks_without_blocking_the_loop():
    limit = RateLimit(2, per=0.05)
    moments, ticks = [], []

    async def call():
        async with limit:
            moments.append(time.monotonic())

    async def ticker():
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    async def main():
        await asyncio.gather(ticker(), *(call() for _ in range(6)))

    started = time.monotonic()
    asyncio.run(main())
    assert len(moments) == 6
    # The 5th and 6th calls cannot start before 2 windows have passed.
    assert max(moments) - started >= 0.1 * 0.99
    # The ticker ran while calls waited: the loop was never blocked.
    assert len(ticks) == 5
    assert ticks[1] < max(moments)


def test_a_rate_limit_is_reusable_and_shared():
    clock = FakeClock()
    shared = RateLimit(2, per=1.0, clock=clock)
    for _run in range(2):
        for _ in range(2):
            with shared:
                pass
    # Four acquisitions over two "runs": the second run waited for the window.
    assert clock.sleeps == [1.0]
    assert clock.now() == 1.0


@pytest.mark.parametrize(
    ("calls", "per"), [(0, 1), (-1, 1), (1.5, 1), (True, 1), (1, 0), (1, -1), (1, "1"), (1, float("nan"))]
)
def test_rate_limit_rejects_bad_values(calls, per):
    with pytest.raises(ConfigurationError, match="RateLimit"):
        RateLimit(calls, per)


def test_rate_limit_pickles_with_fresh_state():
    limit = RateLimit(1, per=600.0)
    limit.acquire()
    copy = pickle.loads(pickle.dumps(limit))
    assert repr(copy) == "RateLimit(1, per=600.0)"
    # A fresh window: the copy does not wait the ten minutes the original would.
    worker = threading.Thread(target=copy.acquire, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive()


# --- ConcurrencyLimit ---------------------------------------------------------------------


class Gauge:
    """Counts holders now and the most ever seen at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def enter(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self):
        with self.lock:
            self.now -= 1


def test_concurrency_limit_caps_threads():
    limit = ConcurrencyLimit(3)
    gauge = Gauge()
    done = []

    def work():
        for _ in range(5):
            with limit:
                gauge.enter()
                time.sleep(0.005)
                gauge.leave()
        done.append(1)

    workers = [threading.Thread(target=work) for _ in range(10)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert len(done) == 10
    assert gauge.most == 3  # reached, never exceeded
    assert limit.in_flight == 0


def test_concurrency_limit_caps_tasks_without_blocking_the_loop():
    limit = ConcurrencyLimit(2)
    gauge = Gauge()
    ticks = []

    async def work():
        async with limit:
            gauge.enter()
            await asyncio.sleep(0.01)
            gauge.leave()

    async def ticker():
        for _ in range(5):
            ticks.append(1)
            await asyncio.sleep(0.001)

    async def main():
        await asyncio.gather(ticker(), *(work() for _ in range(8)))

    asyncio.run(main())
    assert gauge.most == 2
    assert len(ticks) == 5
    assert limit.in_flight == 0


def test_concurrency_limit_shared_by_threads_and_tasks():
    limit = ConcurrencyLimit(2)
    gauge = Gauge()

    def thread_work():
        for _ in range(5):
            with limit:
                gauge.enter()
                time.sleep(0.003)
                gauge.leave()

    async def task_work():
        for _ in range(5):
            async with limit:
                gauge.enter()
                await asyncio.sleep(0.003)
                gauge.leave()

    def loop_thread():
        async def main():
            await asyncio.gather(*(task_work() for _ in range(3)))

        asyncio.run(main())

    workers = [threading.Thread(target=thread_work) for _ in range(3)] + [threading.Thread(target=loop_thread)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not any(worker.is_alive() for worker in workers)
    assert gauge.most == 2
    assert limit.in_flight == 0


def test_a_slot_is_released_when_the_block_raises_and_the_limit_is_reusable():
    limit = ConcurrencyLimit(1)
    for _ in range(3):
        with pytest.raises(RuntimeError), limit:
            raise RuntimeError
    assert limit.in_flight == 0
    with limit:
        assert limit.in_flight == 1


def test_a_task_cancelled_while_waiting_gives_up_its_place():
    limit = ConcurrencyLimit(1)

    async def main():
        await limit.acquire_async()
        waiting = asyncio.ensure_future(limit.acquire_async())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        limit.release()
        # The cancelled waiter did not keep the slot.
        await asyncio.wait_for(limit.acquire_async(), timeout=5)
        limit.release()

    asyncio.run(main())
    assert limit.in_flight == 0


def test_a_slot_handed_to_a_task_cancelled_meanwhile_comes_back():
    limit = ConcurrencyLimit(1)

    async def main():
        await limit.acquire_async()
        waiting = asyncio.ensure_future(limit.acquire_async())
        await asyncio.sleep(0)
        limit.release()  # hands the slot over (woken on the next loop turn)...
        waiting.cancel()  # ...but the task is cancelled first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0)
        await asyncio.wait_for(limit.acquire_async(), timeout=5)
        limit.release()

    asyncio.run(main())
    assert limit.in_flight == 0


def test_releasing_more_than_acquired_is_an_error():
    limit = ConcurrencyLimit(1)
    with pytest.raises(ConfigurationError, match="released more often"):
        limit.release()


@pytest.mark.parametrize("value", [0, -2, 1.5, True, None])
def test_concurrency_limit_rejects_bad_values(value):
    with pytest.raises(ConfigurationError, match="max_in_flight"):
        ConcurrencyLimit(value)


def test_concurrency_limit_pickles_with_fresh_state():
    limit = ConcurrencyLimit(2)
    limit.acquire()
    copy = pickle.loads(pickle.dumps(limit))
    assert repr(copy) == "ConcurrencyLimit(2)"
    assert copy.in_flight == 0
    with copy, copy:
        assert copy.in_flight == 2
