import asyncio
import io
import itertools
import json
import os
import random
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
    FlowError,
    ForkError,
    InvalidInput,
    Outcome,
    Retry,
    RetryPolicy,
    Service,
    StopFlow,
    fork_on,
)
from service_flow._progress import Progress
from service_flow.testing import FakeClock

EXACT = RetryPolicy(max_attempts=3, initial=0.5, multiplier=2, jitter=0)


def inputs(n):
    return ({"n": i} for i in range(n))


def double(n):
    if n < 0:
        raise StopFlow(f"{n} is negative")
    if n == 13:
        raise ValueError("unlucky")
    return {"double": 2 * n}


# -- outcomes ---------------------------------------------------------------------------


def test_each_input_ends_in_one_outcome_with_its_result():
    results = []
    report = Driver(double, on_result=results.append).run([{"n": 1}, {"n": -2}, {"n": 13}, {"n": 4}])
    assert report.counts() == {
        "succeeded": 2,
        "stopped": 1,
        "dead": 1,
        "not_processed": 0,
        "retries": 0,
        "restarts": 0,
    }
    assert [r.outcome for r in results] == [Outcome.SUCCEEDED, Outcome.STOPPED, Outcome.DEAD, Outcome.SUCCEEDED]
    assert results[0].context == {"n": 1, "double": 2}
    assert results[1].reason == "-2 is negative"
    assert results[1].context is None
    assert isinstance(results[2].error, ValueError)
    assert report.dead_letters == [results[2]]
    assert report.dead_letters[0].input == {"n": 13}
    assert [r.position for r in results] == [0, 1, 2, 3]
    assert not report.ok
    assert report.unread is None


def test_iter_yields_results_as_they_complete_and_keeps_the_report():
    drive = Driver(double).iter(inputs(3))
    first = next(drive)
    assert first.context["double"] == 0
    assert [r.context["double"] for r in drive] == [2, 4]
    assert drive.report.succeeded == 3
    assert drive.report.ok


def test_input_id_names_inputs_in_results_and_logs(events):
    report = Driver(double, input_id="n").run([{"n": 13}])
    assert report.dead_letters[0].id == 13
    dead = [e for e in events if e["event"] == "input.dead"]
    assert dead[0]["input_id"] == 13
    assert dead[0]["log_level"] == "error"
    assert "unlucky" in dead[0]["error"]
    report = Driver(double, input_id=lambda data: f"order-{data['n']}").run([{"n": 13}])
    assert report.dead_letters[0].id == "order-13"


def test_an_input_that_is_not_a_mapping_is_a_dead_letter_naming_it():
    report = Driver(double).run([{"n": 1}, [("n", 2)], {"n": 3}])
    assert report.succeeded == 2
    (dead,) = report.dead_letters
    assert isinstance(dead.error, InvalidInput)
    assert "input #1 is a list, not a mapping" in str(dead.error)


def test_the_input_is_never_changed():
    data = [{"n": 1}]
    Driver(double).run(data)
    assert data == [{"n": 1}]


# -- Retry ------------------------------------------------------------------------------


class FlakyThenFine(Service):
    """Fails ``failures`` times per input with Retry, after spoiling the context."""

    def __init__(self, failures, delay=None):
        self.failures, self.delay = failures, delay
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, context):
        with self.lock:
            self.calls.append(dict(context))
            seen = sum(1 for call in self.calls if call["n"] == context["n"])
        context["spoiled"] = True
        if seen <= self.failures:
            raise Retry("busy", delay=self.delay)
        return {"ok": True}


def test_retry_runs_the_same_fresh_input_after_the_policy_delays():
    service = FlakyThenFine(failures=2)
    clock = FakeClock()
    report = Driver(service, retry=EXACT, clock=clock).run([{"n": 1}])
    assert report.succeeded == 1
    assert report.retries == 2
    assert service.calls == [{"n": 1}] * 3  # never the spoiled context
    assert clock.sleeps == [0.5, 1.0]


def test_retry_delay_from_the_exception_overrides_the_policy():
    clock = FakeClock()
    Driver(FlakyThenFine(failures=1, delay=7), retry=EXACT, clock=clock).run([{"n": 1}])
    assert clock.sleeps == [7]


def test_retries_run_out_into_a_dead_letter_with_every_error(events):
    clock = FakeClock()
    report = Driver(FlakyThenFine(failures=10), retry=EXACT, clock=clock).run([{"n": 1}])
    (dead,) = report.dead_letters
    assert dead.attempts == 3
    assert [type(e) for e in dead.errors] == [Retry, Retry, Retry]
    assert report.retries == 2
    retries = [e for e in events if e["event"] == "input.retry"]
    assert [(e["attempt"], e["delay_s"]) for e in retries] == [(1, 0.5), (2, 1.0)]
    assert retries[0]["log_level"] == "info"


def test_the_loop_goes_on_while_an_input_waits_for_its_retry():
    service = FlakyThenFine(failures=1)
    clock = FakeClock()
    Driver(service, retry=EXACT, clock=clock).run(inputs(3))
    assert [call["n"] for call in service.calls] == [0, 1, 2, 0, 1, 2]
    assert clock.sleeps == [0.5]  # one wait, all three retries were due by then


def test_retry_on_and_fatal_on_turn_exception_types_into_control():
    def timeout(n):
        raise TimeoutError("slow")

    report = Driver(timeout, retry=EXACT, retry_on=[TimeoutError], clock=FakeClock()).run([{"n": 1}])
    assert report.retries == 2
    assert len(report.dead_letters[0].errors) == 3


def test_a_seeded_jitter_gives_reproducible_delays():
    def run():
        clock = FakeClock()
        Driver(FlakyThenFine(failures=2), clock=clock, seed=3).run([{"n": 1}])
        return clock.sleeps

    assert run() == run()
    assert all(0 <= d <= 1.0 for d in run())


# -- Fatal ------------------------------------------------------------------------------


class Connection:
    opened = 0

    def __init__(self):
        self.open = False
        self.setup()

    def setup(self):
        Connection.opened += 1
        self.open = True

    def teardown(self):
        self.open = False


class Save(Service):
    """Breaks its connection on given inputs, once each; needs an open connection."""

    def __init__(self, breaks=()):
        self.connection = Connection()
        self.resources = (self.connection,)
        self.breaks = set(breaks)
        self.setups = 0
        self.saved = []

    def setup(self):
        self.setups += 1

    def __call__(self, n):
        if not self.connection.open:
            raise Fatal("connection closed")
        if n in self.breaks:
            self.breaks.discard(n)
            self.connection.open = False
            raise Fatal("connection reset")
        self.saved.append(n)


def test_fatal_restarts_resources_then_runs_the_same_input_again(events):
    save = Save(breaks={1})
    clock = FakeClock()
    report = Driver(save, clock=clock, restart=RetryPolicy(initial=2, jitter=0)).run(inputs(3))
    assert report.succeeded == 3
    assert report.restarts == 1
    assert save.setups == 1
    assert save.connection.open
    assert save.saved == [0, 1, 2]
    assert clock.sleeps == [2]
    restart = next(e for e in events if e["event"] == "driver.restart")
    assert restart["log_level"] == "warning"
    assert restart["input_id"] == 1


def test_too_many_restarts_in_a_row_stop_the_driver_and_nothing_is_lost():
    class Broken(Service):
        def __call__(self, n):
            if n == 2:
                raise Fatal("database is gone")

    source = inputs(6)
    report = Driver(Broken(), max_restarts=3, clock=FakeClock()).run(source)
    assert report.succeeded == 2
    assert report.restarts == 3
    assert "3 restarts in a row" in report.stop_reason
    (stuck,) = report.not_processed
    assert stuck.input == {"n": 2}
    assert stuck.attempts == 4
    assert list(report.unread) == [{"n": 3}, {"n": 4}, {"n": 5}]


def test_a_fork_error_is_a_dead_letter_not_a_restart():
    flow = fork_on("kind", {"a": lambda: None})
    report = Driver(flow, clock=FakeClock()).run([{"kind": "b"}, {"kind": "a"}])
    assert report.restarts == 0
    assert isinstance(report.dead_letters[0].error, ForkError)
    assert report.succeeded == 1


def test_a_setup_that_fails_is_retried_with_backoff():
    class Flaky:
        attempts = 0

        def setup(self):
            Flaky.attempts += 1
            if Flaky.attempts < 3:
                raise OSError("cannot connect yet")

    class Uses(Service):
        resources = (Flaky(),)
        seen = 0

        def __call__(self):
            Uses.seen += 1
            if Uses.seen == 1:
                raise Fatal("lost it")

    clock = FakeClock()
    report = Driver(Uses(), clock=clock, restart=RetryPolicy(initial=1, jitter=0)).run([{}])
    assert report.succeeded == 1
    assert Flaky.attempts == 3
    assert report.restarts == 3
    assert clock.sleeps == [1, 2, 4]


# -- stopping ---------------------------------------------------------------------------


def test_stop_finishes_the_current_input_and_reports_the_rest():
    driver = Driver(double)
    seen = []

    def on_result(result):
        seen.append(result.position)
        if result.position == 4:
            driver.stop()

    driver.on_result = on_result
    source = inputs(10)
    report = driver.run(source)
    assert seen == [0, 1, 2, 3, 4]
    assert report.stop_reason == "stop() was called"
    assert [d["n"] for d in report.unread] == [5, 6, 7, 8, 9]


def test_stop_with_threads_lets_in_flight_inputs_finish():
    started = []
    lock = threading.Lock()

    def slow(n):
        with lock:
            started.append(n)
        if n == 10:
            driver.stop("enough")
        time.sleep(0.01)

    driver = Driver(slow, workers=4)
    source = [{"n": i} for i in range(100)]
    report = driver.run(source)
    done = report.processed
    unread = [d["n"] for d in report.unread]
    assert report.stop_reason == "enough"
    assert done == len(started)  # every started input finished
    assert sorted(started) + unread == list(range(100))
    assert not report.not_processed


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import structlog
    from service_flow import Driver

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    def work(n):
        if n == 20:
            print("ready", flush=True)
        time.sleep(0.005)
        return {"done": n}

    workers = int(sys.argv[1])
    results = []
    report = Driver(work, workers=workers, on_result=lambda r: results.append(r.input["n"])).run(
        {"n": i} for i in range(5000)
    )
    print(json.dumps({
        "done": results,
        "not_processed": [r.input["n"] for r in report.not_processed],
        "unread": [d["n"] for d in report.unread],
        "reason": report.stop_reason,
    }), flush=True)
    """
)


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_loses_nothing(tmp_path, workers, signum):
    script = tmp_path / "drive.py"
    script.write_text(SIGNAL_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script), str(workers)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    ) as process:
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signum)
        out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    report = json.loads(out)
    assert report["reason"] == f"received {signal.Signals(signum).name}"
    accounted = report["done"] + report["not_processed"] + report["unread"]
    assert sorted(accounted) == list(range(5000))
    assert 20 <= len(report["done"]) < 5000


# -- streaming --------------------------------------------------------------------------


class Counting:
    """A source that counts how far it has been read."""

    def __init__(self, n):
        self.n, self.read = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.read += 1
            yield {"n": i}


@pytest.mark.parametrize(("workers", "batch", "ahead"), [(1, None, 1), (4, None, 8), (2, 16, 64)])
def test_inputs_stream_with_bounded_read_ahead(workers, batch, ahead):
    source = Counting(2_000)
    max_ahead = 0
    done = 0

    def on_result(result):
        nonlocal done, max_ahead
        done += 1
        max_ahead = max(max_ahead, source.read - done)

    Driver(double, workers=workers, batch_size=batch, on_result=on_result).run(source)
    assert done == 2_000
    assert max_ahead <= ahead


# -- concurrency and the reliability suite ----------------------------------------------


class RandomFaults(Service):
    """Fails at random (seeded) with Retry, Fatal, StopFlow and plain errors."""

    def __init__(self, seed):
        self.seed = seed
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.journal = []
        self.broken = False

    def __getstate__(self):
        return {"seed": self.seed}

    def __setstate__(self, state):
        self.__init__(state["seed"])

    def setup(self):
        self.broken = False

    def __call__(self, n):
        with self.lock:
            draw = self.rng.random()
        if self.broken:
            raise Fatal("still broken")
        outcome = (
            "retry"
            if draw < 0.10
            else "fatal"
            if draw < 0.12
            else "error"
            if draw < 0.15
            else "stop"
            if draw < 0.20
            else "ok"
        )
        with self.lock:
            self.journal.append((n, outcome))
        if outcome == "retry":
            raise Retry("busy")
        if outcome == "fatal":
            self.broken = True
            raise Fatal("connection lost")
        if outcome == "error":
            raise ValueError(f"bad input {n}")
        if outcome == "stop":
            raise StopFlow("not for us")
        return {"out": n}


FAST = RetryPolicy(max_attempts=3, initial=0.0)
N = 10_000


def check_every_input_has_one_outcome(results, report, n=N):
    positions = sorted(r.position for r in results)
    assert positions == list(range(n))
    by_outcome = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
    assert by_outcome[Outcome.SUCCEEDED] == report.succeeded
    assert by_outcome[Outcome.STOPPED] == report.stopped
    assert by_outcome[Outcome.DEAD] == report.dead
    assert report.succeeded + report.stopped + report.dead == n
    assert not report.not_processed
    for result in results:
        assert result.input == {"n": result.position}
        assert result.attempts == len(result.errors) + (result.outcome is Outcome.SUCCEEDED)
        if result.outcome is Outcome.SUCCEEDED:
            assert result.context == {"n": result.position, "out": result.position}
    assert report.retries > 0
    assert report.restarts > 0
    assert report.succeeded > 0.7 * n


def check_nothing_ran_after_success(journal):
    finished = set()
    for n, outcome in journal:
        assert n not in finished, f"input {n} ran again after it succeeded"
        if outcome in ("ok", "stop", "error"):
            finished.add(n)


@pytest.mark.parametrize("workers", [1, 8])
def test_random_faults_in_process(workers):
    service = RandomFaults(seed=42)
    results = []
    report = Driver(service, workers=workers, retry=FAST, max_restarts=20, restart=FAST, on_result=results.append).run(
        inputs(N)
    )
    check_every_input_has_one_outcome(results, report)
    check_nothing_ran_after_success(service.journal)


def test_one_worker_is_deterministic_for_a_seed():
    def run():
        results = []
        Driver(RandomFaults(seed=7), retry=FAST, restart=FAST, max_restarts=20, on_result=results.append).run(
            inputs(500)
        )
        return [(r.position, r.outcome, r.attempts) for r in results]

    assert run() == run()


def test_random_faults_on_a_process_pool():
    results = []
    with ProcessPoolExecutor(2) as pool:
        report = Driver(
            RandomFaults(seed=42),
            executor=pool,
            workers=2,
            retry=FAST,
            restart=FAST,
            max_restarts=20,
            on_result=results.append,
        ).run(inputs(N))
    check_every_input_has_one_outcome(results, report)


def test_a_thread_pool_executor_shares_the_flow():
    service = RandomFaults(seed=1)
    results = []
    with ThreadPoolExecutor(4) as pool:
        report = Driver(
            service, executor=pool, workers=4, retry=FAST, restart=FAST, max_restarts=20, on_result=results.append
        ).run(inputs(2000))
    check_every_input_has_one_outcome(results, report, n=2000)
    check_nothing_ran_after_success(service.journal)


def test_random_faults_on_dask():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        results = []
        report = Driver(
            RandomFaults(seed=42),
            executor=client.get_executor(),
            workers=2,
            retry=FAST,
            restart=FAST,
            max_restarts=20,
            on_result=results.append,
        ).run(inputs(N))
    check_every_input_has_one_outcome(results, report)


def test_results_are_the_same_whatever_runs_them():
    flow = double
    data = [{"n": i} for i in range(-3, 40)]

    def outcomes(**options):
        results = []
        Driver(flow, on_result=results.append, **options).run(data)
        return sorted((r.position, r.outcome, r.context) for r in results)

    inline = outcomes()
    assert outcomes(workers=8) == inline
    with ProcessPoolExecutor(2) as pool:
        assert outcomes(executor=pool, batch_size=5) == inline


def test_an_error_that_cannot_be_pickled_comes_back_as_a_remote_error():
    report = None
    with ProcessPoolExecutor(1) as pool:
        report = Driver(unpicklable_failure, executor=pool).run([{"n": 1}])
    (dead,) = report.dead_letters
    assert type(dead.error).__name__ == "RemoteError"
    assert isinstance(dead.error, FlowError)
    assert "Unpicklable" in dead.error.error_type
    assert "cannot travel" in str(dead.error)


class Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("no")


def unpicklable_failure(n):
    raise Unpicklable("cannot travel", threading.Lock())


# -- async --------------------------------------------------------------------------------


def test_async_flows_run_concurrently_up_to_the_limit():
    running = 0
    peak = 0

    async def fetch(n):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        if n == 3:
            raise StopFlow("three")
        return {"fetched": n}

    results = []
    report = asyncio.run(Driver(fetch, on_result=results.append).arun(inputs(50), concurrency=5))
    assert report.succeeded == 49
    assert report.stopped == 1
    assert peak == 5
    assert sorted(r.position for r in results) == list(range(50))


def test_async_retry_and_fatal():
    clock = FakeClock()
    seen = {}
    restarts = []

    class Resource:
        def setup(self):
            restarts.append("setup")

    class Fetch(Service):
        resources = (Resource(),)

        async def __call__(self, n):
            seen[n] = seen.get(n, 0) + 1
            if n == 1 and seen[n] == 1:
                raise Retry("later", delay=3)
            if n == 2 and seen[n] == 1:
                raise Fatal("reconnect")
            return {"ok": n}

    async def source():
        for i in range(4):
            yield {"n": i}

    report = asyncio.run(Driver(Fetch(), clock=clock, restart=RetryPolicy(initial=1, jitter=0)).arun(source()))
    assert report.succeeded == 4
    assert report.retries == 1
    assert report.restarts == 1
    assert restarts == ["setup"]
    assert sorted(clock.sleeps) == [1, 3]


def test_a_sync_driver_refuses_an_async_flow():
    async def fetch():
        return None

    with pytest.raises(FlowError, match="arun"):
        Driver(fetch).run([{}])


# -- options, progress, logs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"workers": 0}, "workers"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"retry_on": [42]}, "exception types"),
    ],
)
def test_bad_options_are_named(options, named):
    with pytest.raises(ConfigurationError, match=named):
        Driver(double, **options)


def test_progress_prints_counts_rate_and_eta():
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress(total=100, clock=clock, stream=stream)
    report = Driver(double).run(inputs(10))
    clock.advance(2)
    progress.tick(report)
    line = stream.getvalue()
    assert "10 done (10 succeeded" in line
    assert "5/s" in line
    assert "10%" in line
    assert "ETA 0:00:18" in line


def test_progress_option_writes_to_stderr(capsys):
    Driver(double, progress=True).run([{"n": i} for i in range(5)])
    assert "5 done" in capsys.readouterr().err


def test_run_events(events):
    report = Driver(double).run([{"n": 1}, {"n": -1}])
    names = [e["event"] for e in events]
    assert names[0] == "driver.started"
    assert "input.stopped" in names
    finished = events[-1]
    assert finished["event"] == "driver.finished"
    assert finished["succeeded"] == 1
    assert finished["stopped"] == 1
    assert report.duration >= 0


def test_report_str_and_rate():
    clock = FakeClock()
    report = Driver(double, clock=clock).run([{"n": 1}])
    assert str(report).startswith("flow 'double': succeeded 1, stopped 0, dead 0")
    assert report.rate == 0.0  # no time passed on the fake clock
    assert list(itertools.islice(Driver(double).iter(inputs(100)), 2))[1].context["double"] == 2


def die_on_seven(n):
    if n == 7:
        os._exit(1)  # the worker process dies: the pool is broken for good
    return {"ok": n}


def test_a_worker_process_that_dies_loses_nothing():
    source = inputs(200)
    results = []
    with ProcessPoolExecutor(2) as pool:
        report = Driver(die_on_seven, executor=pool, batch_size=4, clock=FakeClock(), on_result=results.append).run(
            source
        )
    assert report.stop_reason.startswith("the executor refused work: BrokenProcessPool")
    done = {r.position for r in results}
    stuck = {r.position for r in report.not_processed}
    unread = {d["n"] for d in report.unread or ()}  # None when all was read before the pool broke
    assert not done & stuck
    assert done | stuck | unread == set(range(200))
    assert 7 in stuck
    assert report.restarts >= 1


def test_batches_on_an_executor_adapt_to_the_dispatch_cost():
    from service_flow._remote import BatchSizer

    with ProcessPoolExecutor(1) as pool:
        assert Driver(double, executor=pool).adaptive
        assert not Driver(double, executor=pool, batch_size=5).adaptive
    sizer = BatchSizer(None, adaptive=True)
    assert sizer.size == 8
    sizer.resize(8, worked=0.008, round_trip=0.018)  # 1 ms of work per input, 10 ms dispatch
    assert sizer.size == 32  # wants 50 inputs (dispatch a fifth of the work), grows 4x at most
    sizer.resize(32, worked=0.032, round_trip=0.042)
    assert sizer.size == 50
    sizer.resize(50, worked=25.0, round_trip=25.01)  # half a second each: dispatch is nothing
    assert sizer.size == 1
    sizer.resize(1, worked=0.1, round_trip=1.1)  # a slow dispatch, but a batch holds ~1 s of work
    sizer.resize(4, worked=0.4, round_trip=1.4)
    assert sizer.size == 10
    for _ in range(10):
        sizer.resize(sizer.size, worked=0.0, round_trip=0.005)
    assert sizer.size == 1024
    assert BatchSizer(5, adaptive=False).size == 5
