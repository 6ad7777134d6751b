"""Flows as Celery tasks: the StopFlow / Retry / Fatal contract, eagerly and on real workers.

The unit tests run tasks eagerly (``task.apply``) in this process.  The integration tests
use a real Redis server (``SERVICE_FLOW_TEST_REDIS_URL``, else one started here) as
broker and result backend, and real ``celery worker`` processes running tests/celery_app.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import celery_app
import pytest
import redis
from celery import Celery

from service_flow import ConfigurationError, Fatal, Flow, ForkError, Retry, RetryPolicy, Service, StopFlow, fork_on
from service_flow.celery import FlowTaskFailed, flow_task
from service_flow.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTS = Path(__file__).parent
RESULT_TIMEOUT = 30  # seconds: generous, a result normally comes within one


# --- unit tests: the mapping, run eagerly ----------------------------------------------


class Resource:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def setup(self) -> None:
        self.calls.append("setup")

    def teardown(self) -> None:
        self.calls.append("teardown")


class Raise(Service):
    """Raises the next exception of its list on each call, then returns ``done``."""

    def __init__(self, *errors: BaseException, resource: Resource | None = None) -> None:
        self.errors = list(errors)
        self.resources = () if resource is None else (resource,)

    def __call__(self, order_id: int) -> dict[str, Any]:
        if self.errors:
            raise self.errors.pop(0)
        return {"done": order_id}


def eager_app() -> Celery:
    return Celery("eager", broker="memory://", set_as_current=False)


def apply(task: Any, inputs: object) -> Any:
    return task.apply(args=(inputs,))


def test_success_returns_a_json_serialisable_summary():
    task = flow_task(eager_app(), Flow(Raise()).named("orders"))
    result = apply(task, {"order_id": 7}).get()
    assert json.loads(json.dumps(result)) == result
    assert result["status"] == "succeeded"
    assert result["context"] == {"order_id": 7, "done": 7}
    assert (result["reason"], result["flow"], result["attempts"]) == (None, "orders", 1)
    assert result["run_id"]
    assert task.name == "orders"
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True


def test_a_single_service_makes_a_task_too():
    assert apply(flow_task(eager_app(), Raise()), {"order_id": 3}).get()["context"]["done"] == 3


def test_stopflow_ends_the_task_without_error_and_says_why():
    result = apply(flow_task(eager_app(), Flow(Raise(StopFlow("already shipped")))), {"order_id": 7})
    assert result.successful()
    assert result.get()["status"] == "stopped"
    assert result.get()["reason"] == "already shipped"
    assert result.get()["context"] == {"order_id": 7}


def test_exports_pick_the_keys_of_the_result():
    task = flow_task(eager_app(), Flow(Raise()), exports=["done"])
    assert apply(task, {"order_id": 7}).get()["context"] == {"done": 7}


def test_an_exported_key_a_succeeded_run_lacks_fails_the_task_naming_it():
    task = flow_task(eager_app(), Flow(Raise()), name="orders", exports=["done", "total"])
    with pytest.raises(FlowTaskFailed, match="'total'"):
        apply(task, {"order_id": 7}).get()


def test_options_are_checked_when_the_task_is_made():
    with pytest.raises(ConfigurationError) as caught:
        flow_task(eager_app(), Flow(Raise()), exports=[1], retry_on=["TimeoutError"], max_restarts=-1)
    for problem in ("exports must be context keys", "retry_on takes exception types, got 'TimeoutError'", "restarts"):
        assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("options", "named"),
    [({"bind": False}, "bind is not an option"), ({"max_retries": 2}, "max_retries=2"), ({"name": ""}, "name takes")],
)
def test_celery_options_that_would_break_the_contract_are_refused(options, named):
    with pytest.raises(ConfigurationError, match=named):
        flow_task(eager_app(), Flow(Raise()), **options)
    assert flow_task(eager_app(), Flow(Raise()), max_retries=None, acks_late=True).max_retries is None


def test_a_context_value_json_cannot_carry_fails_the_task_naming_the_key_not_the_value():
    task = flow_task(eager_app(), Flow(lambda: {"when": object(), "token": "s3cret"}), name="odd")
    with pytest.raises(FlowTaskFailed) as caught:
        apply(task, {}).get()
    assert "'when' (object)" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "exports" in str(caught.value)


def test_inputs_must_be_a_mapping():
    with pytest.raises(FlowTaskFailed, match="mapping of inputs, got list"):
        apply(flow_task(eager_app(), Flow(Raise())), [1, 2]).get()


def test_retry_uses_the_policy_delays_then_fails_with_every_attempts_error(events):
    errors = [Retry(f"busy {n}") for n in range(1, 5)]
    policy = RetryPolicy(max_attempts=4, initial=1, multiplier=2, jitter=0)
    task = flow_task(eager_app(), Flow(Raise(*errors)), retry=policy)
    with pytest.raises(FlowTaskFailed) as caught:
        apply(task, {"order_id": 7}).get()
    assert [e["countdown_s"] for e in events if e["event"] == "celery.task.retrying"] == [1.0, 2.0, 4.0]
    assert caught.value.attempts == 4
    assert [error.split(" [")[0] for error in caught.value.errors] == [f"Retry: busy {n}" for n in range(1, 5)]
    assert "failed after 4 attempts" in str(caught.value)


def test_a_retry_delay_overrides_the_policy_and_a_later_success_counts_attempts(events):
    task = flow_task(eager_app(), Flow(Raise(Retry("rate limited", delay=30))), retry=RetryPolicy(jitter=0))
    result = apply(task, {"order_id": 7}).get()
    assert [e["countdown_s"] for e in events if e["event"] == "celery.task.retrying"] == [30.0]
    assert (result["status"], result["attempts"]) == ("succeeded", 2)


def test_an_http_retry_after_sets_the_countdown(httpserver, events):
    from service_flow.http import Client

    httpserver.expect_ordered_request("/stock").respond_with_data("busy", status=429, headers={"Retry-After": "7"})
    httpserver.expect_ordered_request("/stock").respond_with_json({"n": 3})
    api = Client(httpserver.url_for(""))
    task = flow_task(eager_app(), Flow(api.get("/stock").capture("stock", "$.n")), retry=RetryPolicy(jitter=0))
    result = apply(task, {}).get()
    assert [e["countdown_s"] for e in events if e["event"] == "celery.task.retrying"] == [7.0]
    assert (result["context"]["stock"], result["attempts"]) == (3, 2)
    api.close()


def test_retry_on_and_other_errors():
    task = flow_task(eager_app(), Flow(Raise(TimeoutError("slow"), KeyError("x"))), retry_on=[TimeoutError])
    with pytest.raises(FlowTaskFailed) as caught:
        apply(task, {"order_id": 7}).get()
    assert caught.value.attempts == 2
    assert caught.value.errors[0].startswith("TimeoutError: slow")
    assert caught.value.errors[1].startswith("KeyError: 'x'")


def test_fatal_recreates_the_resources_and_runs_the_input_again(events):
    resource = Resource()
    clock = FakeClock()
    restart = RetryPolicy(initial=2, jitter=0)
    task = flow_task(eager_app(), Flow(Raise(Fatal("lost"), resource=resource)), restart=restart, clock=clock)
    result = apply(task, {"order_id": 7}).get()
    assert (result["status"], result["attempts"]) == ("succeeded", 2)  # attempts as the driver counts them
    assert resource.calls == ["teardown", "setup"]
    assert clock.sleeps == [2.0]
    assert [e["event"] for e in events if e["event"].startswith("celery.")] == [
        "celery.task.fatal",
        "celery.worker.restarted",
        "celery.task.succeeded",
    ]


def test_an_input_whose_restarts_do_not_help_fails_eagerly_never_returns_none(events):
    resource = Resource()
    clock = FakeClock()
    service = Raise(*[Fatal(f"lost {n}") for n in range(6)], resource=resource)
    restart = RetryPolicy(initial=1, multiplier=3, jitter=0)
    task = flow_task(eager_app(), Flow(service), restart=restart, max_restarts=2, clock=clock)
    result = apply(task, {"order_id": 7})
    assert result.state == "FAILURE"
    with pytest.raises(FlowTaskFailed, match="2 restarts in a row did not help") as caught:
        result.get()
    assert caught.value.attempts == 3  # the first, and one after each restart
    assert clock.sleeps == [1.0, 3.0]
    assert resource.calls == ["teardown", "setup"] * 2  # the third Fatal in a row gives up
    assert [e["restarts"] for e in events if e["event"] == "celery.worker.gave_up"] == [2]
    # The budget is the input's: a new input starts afresh.
    service.errors[:] = [Fatal("later")]
    assert apply(task, {"order_id": 8}).get()["status"] == "succeeded"
    assert clock.sleeps == [1.0, 3.0, 1.0]


def test_a_retry_between_fatal_errors_breaks_the_run_of_restarts():
    clock = FakeClock()
    service = Raise(Fatal("a"), Fatal("b"), Retry("busy", delay=0), Fatal("c"), Fatal("d"))
    task = flow_task(eager_app(), Flow(service), restart=RetryPolicy(initial=1, jitter=0), max_restarts=2, clock=clock)
    result = apply(task, {"order_id": 7}).get()
    assert (result["status"], result["attempts"]) == ("succeeded", 6)
    assert clock.sleeps == [1.0, 2.0, 1.0, 2.0]  # counted afresh after the Retry


@pytest.mark.parametrize("delay", [1e10, 10**400])
def test_a_huge_retry_delay_is_capped_by_the_policy_ceiling(events, delay):
    class Huge(Retry):
        def __init__(self) -> None:
            super().__init__("later")
            self.delay = delay  # around the constructor's check, as a subclass may

    task = flow_task(eager_app(), Flow(Raise(Huge())), retry=RetryPolicy(ceiling=90, jitter=0))
    assert apply(task, {"order_id": 7}).get()["status"] == "succeeded"
    assert [e["countdown_s"] for e in events if e["event"] == "celery.task.retrying"] == [90.0]


def test_a_retry_delay_that_is_not_a_number_uses_the_policy_backoff(events):
    class Odd(Retry):
        def __init__(self) -> None:
            super().__init__("later")
            self.delay = float("nan")

    task = flow_task(eager_app(), Flow(Raise(Odd())), retry=RetryPolicy(initial=3, jitter=0))
    assert apply(task, {"order_id": 7}).get()["status"] == "succeeded"
    assert [e["countdown_s"] for e in events if e["event"] == "celery.task.retrying"] == [3.0]


@pytest.mark.parametrize("exports", ["done", b"done", 5, ["done", 3]])
def test_exports_are_checked_when_the_task_is_made_before_anything_runs(exports):
    service = Raise()
    with pytest.raises(ConfigurationError, match="exports"):
        flow_task(eager_app(), Flow(service), exports=exports)


def test_keyword_arguments_are_the_input():
    task = flow_task(eager_app(), Flow(Raise()))
    assert task.apply(kwargs={"order_id": 9}).get()["context"] == {"order_id": 9, "done": 9}
    with pytest.raises(FlowTaskFailed, match="not both"):
        task.apply(args=({"order_id": 9},), kwargs={"order_id": 9}).get()


@pytest.mark.parametrize(
    "reserved",
    [{"fatal_restarts": "zz"}, {"fatal_restarts": float("nan")}, {"fatal_restarts": -3}, {"attempt_errors": None}],
)
def test_the_reserved_keywords_with_other_values_fail_naming_them(reserved):
    task = flow_task(eager_app(), Flow(Raise(Fatal("lost"))), clock=FakeClock())
    with pytest.raises(FlowTaskFailed, match=f"InvalidInput: {next(iter(reserved))} .*reserved"):
        task.apply(kwargs={"order_id": 9, **reserved}).get()


def test_each_attempt_starts_from_an_untouched_copy_of_the_input():
    seen: list[list[str]] = []

    def collect(items: list[str]) -> None:
        items.append("x")
        seen.append(list(items))
        if len(seen) < 3:
            raise Retry("again", delay=0)
        raise Fatal("lost")

    task = flow_task(eager_app(), collect, max_restarts=1, clock=FakeClock())
    given = {"items": ["a"]}
    with pytest.raises(FlowTaskFailed, match="gave up") as caught:
        apply(task, given).get()
    assert caught.value.attempts == 4  # two retries, a restart, its Fatal again
    assert seen == [["a", "x"]] * 4  # the retries and the run after a restart see the input as given
    assert given == {"items": ["a"]}  # and so does the caller


def test_a_fork_error_is_a_failure_not_a_restart():
    resource = Resource()
    flow = fork_on("payment", {"card": Raise(resource=resource)})
    with pytest.raises(FlowTaskFailed) as caught:
        apply(flow_task(eager_app(), flow), {"payment": "cash", "order_id": 7}).get()
    assert isinstance(caught.value.__cause__, ForkError)
    assert "cash" not in str(caught.value)  # a context value: kept out like in the logs
    assert resource.calls == []


def test_logs_carry_the_task_id_and_the_run_id_never_the_inputs(events):
    task = flow_task(eager_app(), Flow(Raise(StopFlow("nothing to do"))), name="orders")
    result = apply(task, {"order_id": 7, "password": "hunter2"})
    (stopped,) = [e for e in events if e["event"] == "celery.task.stopped"]
    assert stopped["task_id"] == result.id
    assert stopped["run_id"] == result.get()["run_id"]
    assert (stopped["task"], stopped["flow"], stopped["attempt"]) == ("orders", "Raise", 1)
    assert "hunter2" not in repr(events)


def test_the_flow_events_carry_the_task_id_through_structlog_contextvars():
    import structlog

    captured = structlog.testing.LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, captured])
    task = flow_task(eager_app(), Flow(Raise(StopFlow("nothing to do"))))
    result = apply(task, {"order_id": 7})
    (run_stopped,) = [e for e in captured.entries if e["event"] == "run.stopped"]
    assert run_stopped["task_id"] == result.id
    assert run_stopped["run_id"] == result.get()["run_id"]
    assert structlog.contextvars.get_contextvars() == {}


def test_an_async_flow_runs_in_a_task():
    async def fetch(order_id: int) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"total": order_id * 2}

    result = apply(flow_task(eager_app(), Flow(fetch)), {"order_id": 7}).get()
    assert (result["status"], result["context"]["total"]) == ("succeeded", 14)


def test_without_celery_the_import_says_which_extra_to_install():
    code = "import sys; sys.modules['celery'] = None; import service_flow.celery"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert 'pip install "service-flow[celery]"' in done.stderr


def test_failures_keep_their_errors_through_pickle_and_json_args():
    import pickle

    error = FlowTaskFailed("failed after 2 attempts", ["Retry: a", "Retry: b"], "orders")
    for copy in (pickle.loads(pickle.dumps(error)), FlowTaskFailed(*json.loads(json.dumps(error.args)))):
        assert copy.errors == ("Retry: a", "Retry: b")
        assert copy.flow == "orders"
        assert str(copy) == str(error)


# --- integration: a real Redis, real workers --------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the test process dies (Linux), finalizer or not."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 is PR_SET_PDEATHSIG


def _release_results() -> None:
    """Let the session's Celery results go while Redis still runs.

    A result the backend still waits for unsubscribes from Redis when it is collected:
    collected at exit, after Redis stopped, it retries the dead server for about 2.5
    minutes (Celery 5.6) before the test run can end.  Tests drop what would keep their
    results alive (`_outcome` returns errors without their frames); collect them here.
    """
    gc.collect()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``SERVICE_FLOW_TEST_REDIS_URL``, else a redis-server of our own on a free port."""
    given = os.environ.get("SERVICE_FLOW_TEST_REDIS_URL")
    if given:
        if not _ping(given):
            pytest.fail(f"SERVICE_FLOW_TEST_REDIS_URL is set but no Redis answers at {given}")
        yield given
        _release_results()
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server): no Celery integration tests")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    command = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    log = folder / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--dir", str(folder)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only
        )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _ping(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            output = log.read_text(errors="replace")[-500:]
            pytest.skip(f"redis-server could not be started on 127.0.0.1:{port}: {output}")
        time.sleep(0.05)
    yield url
    _release_results()
    process.terminate()
    process.wait(10)


class Worker:
    """A ``celery worker`` process running tests/celery_app.py on one queue."""

    def __init__(self, url: str, prefix: str, queue: str, log: Path, pool: str = "solo") -> None:
        self.name = f"{queue}-{uuid.uuid4().hex[:6]}@127.0.0.1"
        self.log = log
        env = {**os.environ, "SERVICE_FLOW_CELERY_URL": url, "SERVICE_FLOW_CELERY_PREFIX": prefix}
        env["SERVICE_FLOW_CELERY_PARENT"] = str(os.getpid())
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", f"--pool={pool}", "--concurrency=1"]
        command += ["-Q", queue, "-n", self.name, "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with log.open("ab") as out:
            # A session of its own: the test may kill the worker with its pool children.
            self.process = subprocess.Popen(
                command, env=env, cwd=TESTS, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, app: Celery, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[self.name], timeout=0.3):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"celery worker {self.name} did not start:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: nothing gets to clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # a warm shutdown: unacknowledged messages go back
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):  # pool children a killed main process left
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def prefix() -> str:
    return f"sf-celery-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def app(redis_url: str, prefix: str) -> Iterator[Celery]:
    app = celery_app.make_app(redis_url, prefix)
    yield app
    app.close()


@pytest.fixture(scope="session")
def store(redis_url: str, prefix: str) -> Iterator[celery_app.Store]:
    store = celery_app.Store(redis_url, prefix)
    yield store
    store.connect().close()


@pytest.fixture
def start_worker(redis_url: str, prefix: str, app: Celery, tmp_path: Path) -> Iterator[Any]:
    workers: list[Worker] = []

    def start(queue: str, pool: str = "solo") -> Worker:
        worker = Worker(redis_url, prefix, queue, tmp_path / f"worker-{len(workers)}.log", pool)
        workers.append(worker)
        worker.wait_ready(app)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def worker(redis_url: str, prefix: str, app: Celery, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One prefork worker (a main process and one pool child) on the session's queue.

    Module-scoped: it is gone before the other test modules run.
    """
    worker = Worker(redis_url, prefix, prefix, tmp_path_factory.mktemp("worker") / "worker.log", pool="prefork")
    worker.wait_ready(app)
    yield worker
    worker.stop()


def _send(app: Celery, action: str, task: str = "tests.actions", queue: str | None = None) -> Any:
    inputs = {"id": f"{action}-{uuid.uuid4().hex[:8]}", "action": action}
    result = app.send_task(task, args=(inputs,), queue=queue)
    result.input_id = inputs["id"]
    return result


def _outcome(result: Any) -> Any:
    """The task's result, or the `FlowTaskFailed` it raised."""
    try:
        return result.get(timeout=RESULT_TIMEOUT)
    except FlowTaskFailed as error:
        return error.with_traceback(None)  # its frames would keep the test's results alive


def _wait_for(predicate: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def test_a_batch_through_a_real_worker_honours_each_control_exception(app, worker, store):
    actions = ["ok", "ok", "stop", "retry_twice", "retry_forever", "fatal_once", "fail"]
    sent = [(action, _send(app, action)) for action in actions]
    exported = _send(app, "ok", "tests.actions_exported")
    outcomes: dict[str, list[Any]] = {}
    for action, result in sent:
        outcomes.setdefault(action, []).append(_outcome(result))
    for result in outcomes["ok"]:
        assert (result["status"], result["context"]["done"], result["attempts"]) == ("succeeded", 1, 1)
    (stopped,) = outcomes["stop"]
    assert (stopped["status"], stopped["reason"]) == ("stopped", f"nothing to do for {stopped['context']['id']}")
    (retried,) = outcomes["retry_twice"]
    assert (retried["status"], retried["context"]["done"], retried["attempts"]) == ("succeeded", 3, 3)
    (exhausted,) = outcomes["retry_forever"]
    assert isinstance(exhausted, FlowTaskFailed)
    assert [error.split(" [")[0] for error in exhausted.errors] == [f"Retry: still busy ({n})" for n in (1, 2, 3)]
    (recovered,) = outcomes["fatal_once"]
    assert (recovered["status"], recovered["context"]["done"]) == ("succeeded", 2)
    assert recovered["context"]["generation"] >= 1  # it ran on resources set up again
    assert int(store.connect().get(store.key("teardowns"))) >= 1
    (failed,) = outcomes["fail"]
    assert isinstance(failed, FlowTaskFailed)
    assert failed.errors[0].startswith("ValueError: bad input fail-")
    assert exported.get(timeout=RESULT_TIMEOUT)["context"] == {"done": 1}
    # The worker's log lines tie the Celery task to the flow's run, with the policy's countdown.
    retrying = [line for line in worker.output().splitlines() if "celery.task.retrying" in line]
    mine = [line for line in retrying if sent[3][1].id in line]
    assert len(mine) == 2, worker.output()[-3000:]
    assert all("countdown_s=0.2" in line and "run_id=" in line for line in mine)


def test_a_pool_process_killed_mid_task_loses_no_message(app, worker, store):
    result = _send(app, "hang_once")
    pid = _wait_for(lambda: _running_pid(store, result), "the task to start")
    os.kill(pid, signal.SIGKILL)
    done = result.get(timeout=RESULT_TIMEOUT)
    assert (done["status"], done["context"]["done"]) == ("succeeded", 2)
    assert done["context"]["pid"] != pid


def test_a_worker_killed_mid_task_loses_no_message(app, start_worker, store, prefix):
    queue = f"{prefix}-killed"
    first = start_worker(queue)
    result = _send(app, "hang_once", queue=queue)
    pid = _wait_for(lambda: _running_pid(store, result), "the task to start")
    started = time.monotonic()
    assert pid == first.process.pid
    first.kill()
    # Redis hands the message out again once its visibility timeout has passed. A worker
    # looks for such messages when it starts, and then every `unacked_restore_interval`
    # seconds on kombu 5.7+ but only every 100 s before (kombu 5.6 is the last for Python
    # 3.9): start the next worker once the timeout has passed, as a supervisor would.
    time.sleep(max(0.0, started + celery_app.VISIBILITY_TIMEOUT + 0.5 - time.monotonic()))
    start_worker(queue)
    done = result.get(timeout=RESULT_TIMEOUT)
    assert (done["status"], done["context"]["done"]) == ("succeeded", 2)


def test_a_worker_that_keeps_failing_gives_up_and_keeps_the_message(app, start_worker, store, prefix):
    queue = f"{prefix}-broken"
    client = store.connect()
    client.set(store.key("broken"), 1)
    setups_before = int(client.get(store.key("setups")) or 0)
    broken = start_worker(queue)
    result = _send(app, "fatal_while_broken", queue=queue)
    broken.process.wait(RESULT_TIMEOUT)  # the third Fatal in a row shuts the worker down
    assert int(client.get(store.key("setups")) or 0) - setups_before == 2, broken.output()[-3000:]
    assert client.llen(queue) == 1  # requeued, not lost
    client.delete(store.key("broken"))
    start_worker(queue)
    done = result.get(timeout=RESULT_TIMEOUT)
    assert (done["status"], done["context"]["done"]) == ("succeeded", 4)


def _running_pid(store: celery_app.Store, result: Any) -> int | None:
    """The pid of the process running the ``hang_once`` task *result*, once it runs."""
    value = store.connect().get(store.key(f"running:{result.input_id}"))
    return None if value is None else int(value)
