import asyncio
import threading
import time

from service_flow import SYSTEM_CLOCK, Clock
from service_flow.testing import FakeClock


def test_fake_clock_advances_only_when_slept_on():
    clock = FakeClock(start=10)
    assert isinstance(clock, Clock)
    clock.sleep(0.5)
    clock.sleep(0)
    clock.advance(1)
    assert clock.now() == 11.5
    assert clock.sleeps == [0.5]
    assert clock.slept == 0.5


def test_fake_clock_wait_returns_at_once():
    clock = FakeClock()
    event = threading.Event()
    assert clock.wait(event, 3) is False
    assert clock.now() == 3
    event.set()
    assert clock.wait(event, 3) is True
    assert clock.now() == 3


def test_fake_clock_async_sleep():
    clock = FakeClock()
    asyncio.run(clock.asleep(2))
    assert clock.sleeps == [2]


def test_system_clock_honours_fractions_and_skips_zero():
    assert isinstance(SYSTEM_CLOCK, Clock)
    start = time.perf_counter()
    SYSTEM_CLOCK.sleep(0)
    SYSTEM_CLOCK.sleep(-1)
    assert time.perf_counter() - start < 0.01
    start = time.perf_counter()
    SYSTEM_CLOCK.sleep(0.05)
    assert time.perf_counter() - start >= 0.05
    event = threading.Event()
    event.set()
    assert SYSTEM_CLOCK.wait(event, 5) is True
