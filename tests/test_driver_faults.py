"""The driver under faults: the same outcomes wherever the work runs, nothing lost, options checked."""

import asyncio
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest

from service_flow import (
    ConfigurationError,
    Driver,
    Fatal,
    InvalidInput,
    Outcome,
    RemoteError,
    Retry,
    RetryPolicy,
    Service,
    StopFlow,
)
from service_flow.testing import FakeClock

# -- one scenario, every place the work can run ----------------------------------------


class Script(Service):
    """Does what the input's ``plan`` says, counting attempts in files (seen by every process)."""

    def __init__(self, folder):
        self.folder = str(folder)

    def attempt(self, n):
        with open(os.path.join(self.folder, str(n)), "ab") as counter:  # noqa: PTH123, PTH118
            counter.write(b".")
            return counter.tell()

    def __call__(self, n, plan):
        attempt = self.attempt(n)
        if plan == "retry2" and attempt <= 2:
            raise Retry(f"busy {attempt}", delay=0)
        if plan == "retry_forever":
            raise Retry(f"still busy {attempt}", delay=0)
        if plan == "fatal1" and attempt == 1:
            raise Fatal("connection lost")
        if plan == "fatal_always":
            raise Fatal(f"broken {attempt}")
        if plan == "fail":
            raise ValueError(f"bad {n}")
        if plan == "stop":
            raise StopFlow(f"nothing for {n}")
        return {"done": attempt}


PLANS = ["ok", "retry2", "stop", "fatal1", "ok", "fail", "retry_forever", "ok", "retry2", "fatal_always"]


def scenario(plans=PLANS):
    return [{"n": n, "plan": plan} for n, plan in enumerate(plans)]


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        yield client


MODES = ["inline", "threads", "thread_executor", "process_pool", "dask", "arun"]


def drive(mode, folder, data, request, **options):
    results = []
    options = {
        "retry": RetryPolicy(max_attempts=3, initial=0, jitter=0),
        "restart": RetryPolicy(initial=0.01, jitter=0),
        "max_restarts": 3,
        "on_result": results.append,
        **options,
    }
    service = Script(folder)
    if mode == "inline":
        report = Driver(service, **options).run(data)
    elif mode == "threads":
        report = Driver(service, workers=4, **options).run(data)
    elif mode == "thread_executor":
        with ThreadPoolExecutor(3) as pool:
            report = Driver(service, executor=pool, workers=3, **options).run(data)
    elif mode == "process_pool":
        with ProcessPoolExecutor(2) as pool:
            report = Driver(service, executor=pool, workers=2, batch_size=3, **options).run(data)
    elif mode == "dask":
        client = request.getfixturevalue("dask_client")
        report = Driver(service, executor=client.get_executor(), workers=2, batch_size=2, **options).run(data)
    else:
        report = asyncio.run(Driver(service, **options).arun(data, concurrency=4))
    return report, results


def summary(report, results):
    every = sorted([*results, *report.not_processed], key=lambda r: r.position)
    return {
        "inputs": [
            (r.position, r.outcome, r.attempts, [type(e).__name__ for e in r.errors], (r.context or {}).get("done"))
            for r in every
        ],
        "counts": {key: value for key, value in report.counts().items() if key != "restarts"},
        "stop_reason": report.stop_reason,
    }


@pytest.mark.parametrize("mode", MODES)
def test_the_same_scenario_ends_the_same_way_wherever_it_runs(mode, tmp_path, request):
    (tmp_path / "expected").mkdir()
    (tmp_path / mode).mkdir()
    # Every input completes, so every outcome is fixed whatever the timing: the run that
    # gives up on an input (below) ends concurrent inputs by timing, hence its own test.
    plans = [plan for plan in PLANS if plan != "fatal_always"]
    expected = summary(*drive("inline", tmp_path / "expected", scenario(plans), request))
    got = summary(*drive(mode, tmp_path / mode, scenario(plans), request))
    assert got == expected
    # What the inline run does, spelled out.
    outcomes = {position: (outcome, attempts) for position, outcome, attempts, _, _ in expected["inputs"]}
    assert outcomes[3] == (Outcome.SUCCEEDED, 2)  # one restart, then done
    assert outcomes[1] == outcomes[8] == (Outcome.SUCCEEDED, 3)
    assert outcomes[6] == (Outcome.DEAD, 3)
    assert expected["stop_reason"] is None
    assert expected["counts"]["succeeded"] == 6


@pytest.mark.parametrize("mode", MODES)
def test_giving_up_on_an_input_ends_the_run_the_same_way_wherever_it_runs(mode, tmp_path, request):
    report, results = drive(mode, tmp_path, scenario(), request)
    # The always-Fatal input gets its 3 restarts, then the driver gives up on it (4
    # attempts) and stops; every input is accounted for exactly once.
    every = sorted([*results, *report.not_processed], key=lambda r: r.position)
    assert [r.position for r in every] == list(range(len(PLANS)))
    (stuck,) = [r for r in every if r.position == len(PLANS) - 1]
    assert (stuck.outcome, stuck.attempts) == (Outcome.NOT_PROCESSED, 4)
    assert report.stop_reason == "3 restarts in a row did not help"
    assert all(r.outcome is not Outcome.SUCCEEDED or PLANS[r.position] != "fail" for r in every)


@pytest.mark.parametrize("mode", MODES)
def test_an_input_that_always_raises_fatal_does_not_run_for_ever_beside_good_ones(mode, tmp_path, request):
    data = scenario(["fatal_always", *["ok"] * 30])
    report, _ = drive(mode, tmp_path, data, request, max_restarts=2)
    (stuck,) = [r for r in report.not_processed if r.position == 0]
    assert stuck.attempts == 3
    assert report.stop_reason == "2 restarts in a row did not help"
    assert (tmp_path / "0").stat().st_size == 3  # three runs, not a hundred


@pytest.mark.parametrize("mode", ["process_pool", "dask"])
def test_retries_and_restarts_run_again_on_other_processes(mode, tmp_path, request):
    data = scenario(["retry2", "fatal1", "ok"])
    report, _ = drive(mode, tmp_path, data, request)
    assert report.counts() == {
        "succeeded": 3,
        "stopped": 0,
        "dead": 0,
        "not_processed": 0,
        "retries": 2,
        "restarts": 1,
    }
    assert [(tmp_path / str(n)).stat().st_size for n in range(3)] == [3, 2, 1]  # each attempt really ran


# -- what cannot be pickled ------------------------------------------------------------


class Returns(Service):
    """Returns an unpicklable value for input 2, counting runs in files."""

    def __init__(self, folder):
        self.folder = str(folder)

    def __call__(self, n):
        with open(os.path.join(self.folder, str(n)), "ab") as counter:  # noqa: PTH123, PTH118
            counter.write(b".")
        return {"lock": threading.Lock()} if n == 2 else {"out": n}


@pytest.mark.parametrize("mode", ["process_pool", "dask"])
def test_a_result_that_cannot_be_pickled_back_is_that_inputs_dead_letter(mode, tmp_path, request):
    data = [{"n": n} for n in range(6)]
    if mode == "dask":
        executor = request.getfixturevalue("dask_client").get_executor()
        report = Driver(Returns(tmp_path), executor=executor, workers=2, batch_size=3).run(data)
    else:
        with ProcessPoolExecutor(2) as pool:
            report = Driver(Returns(tmp_path), executor=pool, workers=2, batch_size=3).run(data)
    (dead,) = report.dead_letters
    assert dead.position == 2
    assert isinstance(dead.error, RemoteError)
    assert "result cannot be pickled back" in str(dead.error)
    assert report.succeeded == 5
    assert report.restarts == 0
    assert [(tmp_path / str(n)).stat().st_size for n in range(6)] == [1] * 6  # no neighbour ran twice


@pytest.mark.parametrize("mode", ["process_pool", "dask"])
def test_an_input_that_cannot_be_pickled_is_its_own_dead_letter(mode, tmp_path, request):
    data = [{"n": n} for n in range(6)]
    data[3] = {"n": 3, "lock": threading.Lock()}
    if mode == "dask":
        executor = request.getfixturevalue("dask_client").get_executor()
        report = Driver(Returns(tmp_path), executor=executor, workers=2, batch_size=3).run(data)
    else:
        with ProcessPoolExecutor(2) as pool:
            report = Driver(Returns(tmp_path), executor=pool, workers=2, batch_size=3).run(data)
    dead = {r.position: r for r in report.dead_letters}
    assert set(dead) == {2, 3}  # 2: its result; 3: its input
    assert "input cannot be pickled" in str(dead[3].error)
    assert report.succeeded == 4
    assert report.stop_reason is None
    assert report.restarts == 0
    assert not (tmp_path / "3").exists()


# -- nothing is lost, whatever fails ----------------------------------------------------


class Boom(Exception):
    pass


def flaky(n):
    if n % 3 == 0:
        raise Retry("later", delay=50)
    return {"out": n}


@pytest.mark.parametrize("workers", [1, 4])
def test_an_on_result_that_raises_propagates_with_the_report_and_restores_the_signals(workers):
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    seen = []

    def on_result(result):
        seen.append(result.position)
        if len(seen) == 5:
            raise Boom("ack failed")

    with pytest.raises(Boom) as caught:
        Driver(flaky, workers=workers, on_result=on_result, clock=FakeClock()).run({"n": n} for n in range(100))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    report = caught.value.report
    assert report.stop_reason.startswith("on_result raised Boom: ack failed")
    waiting = {r.position for r in report.not_processed}
    assert 0 in waiting  # the retry it was waiting for is listed, not dropped
    assert all(r.outcome is Outcome.NOT_PROCESSED and r.position % 3 == 0 for r in report.not_processed)
    assert report.succeeded >= 5
    assert report.unread is not None


def broken_source(n, fail_at):
    for i in range(n):
        if i == fail_at:
            raise Boom("the queue went away")
        yield {"n": i}


@pytest.mark.parametrize("workers", [1, 4])
def test_a_source_that_raises_propagates_with_everything_done_counted(workers):
    def slow(n):
        time.sleep(0.002)
        return {"out": n}

    results = []
    with pytest.raises(Boom) as caught:
        Driver(slow, workers=workers, on_result=results.append).run(broken_source(50, fail_at=30))
    report = caught.value.report
    assert report.stop_reason == "the input source raised Boom: the queue went away"
    assert report.succeeded == 30 == len(results)  # every input read before the failure finished
    assert not report.not_processed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_iter_and_arun_attach_the_report_too():
    drive = Driver(flaky, clock=FakeClock()).iter(broken_source(10, fail_at=4))
    with pytest.raises(Boom) as caught:
        list(drive)
    assert drive.report is caught.value.report
    assert drive.report.succeeded == 2  # 1 and 2; 0 and 3 were waiting for their retries
    assert sorted(r.position for r in drive.report.not_processed) == [0, 3]

    with pytest.raises(Boom) as caught:
        asyncio.run(Driver(flaky, clock=FakeClock()).arun(broken_source(10, fail_at=4)))
    assert caught.value.report.stop_reason.startswith("the input source raised")

    def on_result(result):
        raise Boom("nope")

    with pytest.raises(Boom) as caught:
        asyncio.run(Driver(flaky, on_result=on_result, clock=FakeClock()).arun([{"n": n} for n in range(1, 9)]))
    report = caught.value.report
    assert report.stop_reason == "on_result raised Boom: nope"
    assert report.processed + len(report.not_processed) + len(list(report.unread or [])) <= 8


def test_closing_an_iteration_early_ends_its_report():
    with Driver(flaky, clock=FakeClock()).iter({"n": n} for n in range(1, 100)) as drive:
        first = next(drive)
    assert first.position == 0
    assert drive.report.stop_reason == "the drive was closed before its end"
    assert drive.report.succeeded == 1


def test_a_second_ctrl_c_during_an_attempt_loses_no_input():
    def interrupt_twice(n):
        if n == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the first stops gracefully
            os.kill(os.getpid(), signal.SIGINT)  # the second interrupts at once
            time.sleep(0.5)  # the handler runs here, in this attempt
        return {"out": n}

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as caught:
        Driver(interrupt_twice).run({"n": n} for n in range(10))
    assert signal.getsignal(signal.SIGINT) is before
    report = caught.value.report
    assert report.succeeded == 2
    [interrupted] = report.not_processed
    assert (interrupted.position, interrupted.attempts) == (2, 1)
    assert isinstance(interrupted.error, KeyboardInterrupt)


class InterruptedWait(FakeClock):
    """A clock whose first wait is interrupted, as by a second Ctrl-C during a restart's backoff."""

    def wait(self, event, timeout):
        raise KeyboardInterrupt


@pytest.mark.parametrize("workers", [1, 4])
def test_an_interrupt_while_an_input_waits_for_its_restart_loses_no_input(workers):
    def fatal_once(n):
        if n == 1:
            raise Fatal("lost")
        return {"out": n}

    with pytest.raises(KeyboardInterrupt) as caught:
        Driver(fatal_once, workers=workers, clock=InterruptedWait()).run([{"n": n} for n in range(3)])
    report = caught.value.report
    assert 1 in [r.position for r in report.not_processed]
    assert report.succeeded + len(report.not_processed) + len(list(report.unread or [])) == 3


def test_closing_a_drive_before_its_first_result_still_ends_its_report():
    source = iter([{"n": 1}, {"n": 2}])
    with Driver(flaky).iter(source) as drive:
        pass
    assert drive.report is not None
    assert drive.report.stop_reason == "the drive was closed before its end"
    assert drive.report.unread is source
    assert list(drive) == []  # closed: nothing more comes


def test_a_flow_that_cannot_be_pickled_is_refused_with_a_process_pool():
    with ProcessPoolExecutor(1) as pool, pytest.raises(ConfigurationError, match=r"executor .* cannot be pickled"):
        Driver(lambda n: {"out": n}, executor=pool)
    with ThreadPoolExecutor(1) as pool:  # threads share the flow: nothing to pickle
        assert Driver(lambda n: {"out": n}, executor=pool).run([{"n": 1}]).ok


@pytest.mark.parametrize(
    ("inputs", "said"), [(None, "got NoneType"), (5, "got int"), ({"n": 1}, "pass \\[inputs\\]"), ("ab", "got one str")]
)
def test_what_is_not_a_stream_of_inputs_is_refused_naming_the_method(inputs, said):
    driver = Driver(flaky)
    for method, call in [
        ("run", lambda: driver.run(inputs)),
        ("iter", lambda: driver.iter(inputs)),
        ("arun", lambda: asyncio.run(driver.arun(inputs))),
    ]:
        with pytest.raises(InvalidInput, match=rf"Driver\.{method} takes .*{said}"):
            call()


class Unprintable(Exception):
    def __str__(self):
        msg = "no str for you"
        raise RuntimeError(msg)


class UnprintableRetry(Retry):
    __str__ = Unprintable.__str__


class UnprintableFatal(Fatal):
    __str__ = Unprintable.__str__


def unprintable(n, kind):
    if n == 0:
        raise {"fail": Unprintable, "retry": UnprintableRetry, "fatal": UnprintableFatal}[kind]
    return {"out": n}


async def aunprintable(n, kind):
    return unprintable(n, kind)


@pytest.mark.parametrize("kind", ["fail", "retry", "fatal"])
@pytest.mark.parametrize("mode", ["inline", "threads", "process_pool", "arun"])
def test_an_error_whose_str_raises_is_an_outcome_never_the_end_of_the_run(mode, kind):
    options = {"clock": FakeClock(), "max_restarts": 1, "retry": RetryPolicy(max_attempts=2)}
    data = [{"n": n, "kind": kind} for n in range(3)]
    if mode == "arun":
        report = asyncio.run(Driver(aunprintable, **options).arun(data))
    elif mode == "process_pool":
        with ProcessPoolExecutor(2) as pool:
            report = Driver(unprintable, executor=pool, batch_size=1, **options).run(data)
    else:
        report = Driver(unprintable, workers=4 if mode == "threads" else 1, **options).run(data)
    if kind == "fatal":
        assert report.stop_reason == "1 restarts in a row did not help"
        assert [r.position for r in report.not_processed] == [0]
    else:
        assert [r.position for r in report.dead_letters] == [0]
        assert report.succeeded == 2


def test_an_arun_task_that_raises_ends_the_run_with_the_report():
    class BrokenClock(FakeClock):
        async def asleep(self, seconds):
            msg = "the clock broke"
            raise RuntimeError(msg)

    def later(n):
        if n == 1:
            raise Retry("later", delay=5)
        return {"out": n}

    with pytest.raises(RuntimeError, match="the clock broke") as caught:
        asyncio.run(Driver(later, clock=BrokenClock()).arun([{"n": n} for n in range(4)]))
    report = caught.value.report
    assert report.stop_reason == "processing an input raised RuntimeError: the clock broke"
    assert [r.position for r in report.not_processed] == [1]


def test_iter_calls_on_result_too_and_an_on_result_that_raises_ends_it_with_the_report():
    seen = []

    def on_result(result):
        seen.append(result.position)
        if len(seen) == 3:
            raise Boom("ack failed")

    before = signal.getsignal(signal.SIGINT)
    drive = Driver(flaky, on_result=on_result, clock=FakeClock()).iter({"n": n} for n in range(1, 100))
    handed = []
    with pytest.raises(Boom) as caught:
        handed.extend(result.position for result in drive)
    assert handed == seen[:2]  # each result went to on_result before the caller got it
    assert caught.value.report is drive.report
    assert drive.report.stop_reason == "on_result raised Boom: ack failed"
    assert drive.report.unread is not None
    assert signal.getsignal(signal.SIGINT) is before


def test_a_stop_before_run_stops_that_run_at_once_and_is_consumed():
    driver = Driver(flaky)
    driver.stop("maintenance")
    assert driver.stopping
    source = iter([{"n": 1}, {"n": 2}])
    report = driver.run(source)
    assert report.stop_reason == "maintenance"
    assert report.processed == 0
    assert list(report.unread) == [{"n": 1}, {"n": 2}]
    assert not driver.stopping
    assert driver.run([{"n": 1}]).ok  # the next run starts afresh


# -- each attempt on an untouched copy --------------------------------------------------


class SpoilThenRetry(Service):
    """Appends to the context's lists, then asks for a retry the first time."""

    def __init__(self):
        self.seen = []

    def __call__(self, items, meta):
        self.seen.append((list(items), list(meta["tags"])))
        items.append("spoiled")
        meta["tags"].append("spoiled")
        if len(self.seen) == 1:
            raise Retry("again", delay=0)
        return {"count": len(items)}


@pytest.mark.parametrize("mode", ["inline", "threads", "arun"])
def test_each_attempt_starts_from_an_untouched_copy_nested_values_included(mode):
    data = {"items": ["a"], "meta": {"tags": ["x"]}}
    service = SpoilThenRetry()
    driver = Driver(service, workers=4 if mode == "threads" else 1, clock=FakeClock())
    report = asyncio.run(driver.arun([data])) if mode == "arun" else driver.run([data])
    assert report.succeeded == 1
    assert report.retries == 1
    assert data == {"items": ["a"], "meta": {"tags": ["x"]}}  # the caller's input is untouched
    assert service.seen == [(["a"], ["x"]), (["a"], ["x"])]  # the second attempt never saw the first's


def test_an_input_value_that_cannot_be_copied_is_passed_as_it_is():
    lock = threading.Lock()

    def uses(lock, items):
        items.append(1)
        return {"locked": lock.locked()}

    report = Driver(uses).run([{"lock": lock, "items": []}])
    assert report.succeeded == 1


# -- delays -----------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [math.nan, math.inf, -1, "3", True])
def test_retry_refuses_a_delay_that_is_not_finite_seconds(delay):
    with pytest.raises(ConfigurationError, match="Retry delay"):
        Retry("x", delay=delay)


def test_a_service_raising_a_bad_retry_delay_is_a_dead_letter_and_the_run_goes_on():
    def bad(n):
        if n == 1:
            raise Retry("later", delay=math.nan)
        return {"n2": n}

    report = Driver(bad, clock=FakeClock()).run([{"n": n} for n in range(3)])
    assert report.succeeded == 2
    assert "Retry delay must be a finite number" in str(report.dead_letters[0].error)


class Sneaky(Retry):
    """A Retry whose delay was set around the constructor's check."""

    def __init__(self, delay):
        super().__init__("later")
        self.delay = delay


@pytest.mark.parametrize(("delay", "slept"), [(1e10, 7.0), (math.inf, 7.0), (10**400, 7.0), (math.nan, 0.5)])
def test_every_delay_is_finite_and_capped_in_every_loop(delay, slept):
    seen = []

    def once(n):
        seen.append(n)
        if len(seen) == 1:
            raise Sneaky(delay)
        return {"ok": True}

    policy = RetryPolicy(initial=0.5, jitter=0, ceiling=7)
    for arun in (False, True):
        seen.clear()
        clock = FakeClock()
        driver = Driver(once, retry=policy, clock=clock)
        data = [{"n": 1}]
        report = asyncio.run(driver.arun(data)) if arun else driver.run(data)
        assert report.succeeded == 1
        assert clock.sleeps == [slept]


def test_backoff_is_constant_time_and_never_overflows():
    policy = RetryPolicy(initial=1e-300, multiplier=1.0000001, max_delay=10, jitter=0)
    started = time.perf_counter()
    assert policy.delay(10**9) == pytest.approx(1e-300 * math.exp(100), rel=1e-6)  # below the cap still
    assert policy.delay(10**10) == 10.0
    assert policy.delay(10**30) == 10.0
    assert RetryPolicy(multiplier=1, initial=2, jitter=0).delay(10**12) == 2.0
    assert time.perf_counter() - started < 0.01


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"workers": math.nan}, "workers"),
        ({"workers": "4"}, "workers"),
        ({"workers": True}, "workers"),
        ({"workers": 2.5}, "workers"),
        ({"batch_size": math.inf}, "batch_size"),
        ({"batch_size": False}, "batch_size"),
        ({"max_restarts": "3"}, "max_restarts"),
        ({"max_restarts": math.nan}, "max_restarts"),
        ({"max_restarts": True}, "max_restarts"),
        ({"retry": 5}, "retry takes a RetryPolicy"),
        ({"restart": "fast"}, "restart takes a RetryPolicy"),
        ({"retry_on": "ValueError"}, "retry_on"),
        ({"fatal_on": 3}, "fatal_on"),
        ({"fatal_on": [ValueError, "x"]}, "fatal_on"),
        ({"input_id": 5}, "input_id"),
        ({"on_result": "print"}, "on_result"),
        ({"clock": object()}, "clock"),
        ({"seed": "x"}, "seed"),
        ({"progress": "yes"}, "progress"),
        ({"total": math.nan}, "total"),
        ({"handle_signals": 1}, "handle_signals"),
        ({"executor": "dask"}, "executor"),
    ],
)
def test_every_bad_option_is_refused_naming_it(options, named):
    with pytest.raises(ConfigurationError, match=named):
        Driver(flaky, **options)


def test_a_bare_exception_class_is_accepted_for_retry_on_and_fatal_on():
    def slow(n):
        raise TimeoutError("slow")

    driver = Driver(slow, retry_on=TimeoutError, fatal_on=ConnectionError, retry=RetryPolicy(max_attempts=2))
    assert driver.retry_on == (TimeoutError,)
    report = driver.run([{"n": 1}])
    assert report.retries == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"initial": math.nan}, "initial"),
        ({"initial": math.inf}, "initial"),
        ({"multiplier": True}, "multiplier"),
        ({"max_delay": "1"}, "max_delay"),
        ({"jitter": math.nan}, "jitter"),
        ({"ceiling": -1}, "ceiling"),
    ],
)
def test_retry_policy_refuses_bad_fields_naming_them(options, named):
    with pytest.raises(ConfigurationError, match=named):
        RetryPolicy(**options)


@pytest.mark.parametrize("concurrency", [0, math.nan, True, "2"])
def test_arun_refuses_a_bad_concurrency(concurrency):
    with pytest.raises(ConfigurationError, match="concurrency"):
        asyncio.run(Driver(flaky).arun([{"n": 1}], concurrency=concurrency))


def test_the_driver_pickles_its_policies_as_values():
    policy = RetryPolicy(ceiling=5)
    assert pickle.loads(pickle.dumps(policy)) == policy


# -- logs of an application that configured nothing -------------------------------------

QUIET = textwrap.dedent(
    """
    import sys
    from service_flow import Driver, Fatal, Retry, RetryPolicy, StopFlow
    from service_flow.testing import FakeClock

    seen = set()

    def work(n):
        if n not in seen:
            seen.add(n)
            if n == 1:
                raise Retry("busy")
            if n == 2:
                raise Fatal("reconnect")
        if n == 3:
            raise StopFlow("not ours")
        if n == 4 and sys.argv[1] == "fail":
            raise ValueError("bad input")
        return {"ok": n}

    for workers in (1, 3):
        seen.clear()
        report = Driver(work, workers=workers, clock=FakeClock()).run({"n": n} for n in range(6))
        assert report.ok is (sys.argv[1] == "ok"), report
    """
)


def test_a_successful_run_prints_nothing_when_structlog_is_unconfigured(tmp_path):
    script = tmp_path / "quiet.py"
    script.write_text(QUIET)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run([sys.executable, str(script), "ok"], capture_output=True, text=True, env=env, check=True)
    assert done.stdout == ""  # retries, a restart and a stop that all ended well: silence
    failed = subprocess.run([sys.executable, str(script), "fail"], capture_output=True, text=True, env=env, check=True)
    lines = failed.stdout.splitlines()
    assert sum("input.dead" in line for line in lines) == 2  # what went wrong for good is said
    assert sum("driver.finished" in line for line in lines) == 2
    assert not any("input.retry" in line or "driver.restart" in line for line in lines)


def test_a_stop_ends_arun_s_wait_for_a_long_retry():
    def later(n):
        if n == 0:
            raise Retry("much later", delay=3000)
        return {"ok": n}

    driver = Driver(later)

    async def main():
        runner = asyncio.ensure_future(driver.arun([{"n": 0}, {"n": 1}]))
        await asyncio.sleep(0.05)
        threading.Thread(target=driver.stop, args=("enough",)).start()  # from another thread
        return await asyncio.wait_for(runner, timeout=5)

    report = asyncio.run(main())
    assert report.stop_reason == "enough"
    assert report.succeeded == 1
    assert [r.position for r in report.not_processed] == [0]
