"""Per-flow overhead of running flows through Celery, against the in-process driver.

The same N inputs go through the same flow (5 trivial steps, then optionally a step that
blocks for ``--work-ms`` milliseconds, like a call to a service) in three ways, in
interleaved rounds:

- in process: the driver (``service_flow.driver.Driver``, one worker, inline), or
  ``flow.run`` in a loop where the driver is not there;
- Celery with 1 worker process, and with 2 (``--pool=prefork --concurrency=W``), on a
  local Redis as broker and result backend: N ``apply_async`` calls, then every result.

Printed: tasks per second (median of the rounds), the per-flow overhead of Celery in
microseconds (time per flow minus the in-process time per flow) and the ratio of the
times per flow.  The script starts its own redis-server (persistence off) and workers;
structlog is configured as in production (warnings and up, loggers cached) everywhere.

Run: ``python benchmarks/celery.py [--inputs 300] [--rounds 3] [--work-ms 0 2]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the library it measures: keep its folder off the import path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).parent.resolve()]

import argparse  # noqa: E402 - after the import path is fixed
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Callable  # noqa: E402

APP_MODULE = """
import logging, os, time
import structlog
from celery import Celery
from service_flow import Flow
from service_flow.celery import flow_task

def s0(k0): return {"k1": k0 + 1}
def s1(k1): return {"k2": k1 + 1}
def s2(k2): return {"k3": k2 + 1}
def s3(k3): return {"k4": k3 + 1}
def s4(k4): return {"k5": k4 + 1}

WORK = float(os.environ.get("BENCH_WORK_MS", "0")) / 1000

def work(k5):
    time.sleep(WORK)  # stands for a call to another service

FLOWS = {
    "trivial": Flow(s0, s1, s2, s3, s4).named("trivial"),
    "work": Flow(s0, s1, s2, s3, s4, work).named("work"),
}

# As an application in production would: warnings and up, loggers cached.
structlog.configure(
    wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING), cache_logger_on_first_use=True
)

app = Celery("bench", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"], set_as_current=False)
app.conf.update(worker_prefetch_multiplier=4, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
TASKS = {name: flow_task(app, flow, name=f"bench.{name}") for name, flow in FLOWS.items()}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*command, "--dir", str(folder)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if answers(url):
            return process, url
        time.sleep(0.1)
    sys.exit("redis-server did not start")


def answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


def start_worker(folder: Path, url: str, queue: str, processes: int, work_ms: float) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_REDIS": url, "BENCH_WORK_MS": str(work_ms), "PYTHONPATH": str(folder)}
    command = [sys.executable, "-m", "celery", "-A", "bench_app", "worker", "--pool=prefork"]
    command += [f"--concurrency={processes}", "-Q", queue, "-n", f"{queue}@127.0.0.1", "--loglevel=WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(app: Any, names: list[str]) -> None:
    deadline = time.monotonic() + 60
    while len(app.control.ping(destination=names, timeout=0.5)) < len(names):
        if time.monotonic() > deadline:
            sys.exit(f"workers {names} did not start")


def in_process(flow: Any) -> Callable[[list[dict[str, int]]], None]:
    """The in-process runner: the driver when it exists, else ``flow.run`` in a loop."""
    try:
        from service_flow.driver import Driver
    except ImportError:

        def loop(inputs: list[dict[str, int]]) -> None:
            for item in inputs:
                flow.run(item)

        return loop

    def drive(inputs: list[dict[str, int]]) -> None:
        report = Driver(flow, handle_signals=False).run(inputs)
        assert report.counts()["succeeded"] == len(inputs)  # noqa: S101 - a broken run is no figure

    return drive


def through_celery(task: Any, queue: str) -> Callable[[list[dict[str, int]]], None]:
    from celery.result import ResultSet

    def send_all(inputs: list[dict[str, int]]) -> None:
        results = ResultSet([task.apply_async((item,), queue=queue) for item in inputs])
        outcome = results.join_native(timeout=300)
        assert all(result["status"] == "succeeded" for result in outcome)  # noqa: S101 - a broken run is no figure

    return send_all


def timed(call: Callable[[list[dict[str, int]]], None], inputs: list[dict[str, int]]) -> float:
    started = time.perf_counter()
    call(inputs)
    return time.perf_counter() - started


def scenario(name: str, module: Any, queues: dict[int, str], n: int, rounds: int) -> None:
    flow = module.FLOWS[name]
    contenders = {"in process": in_process(flow)}
    for processes, queue in queues.items():
        contenders[f"celery, {processes} process{'es' if processes > 1 else ''}"] = through_celery(
            module.TASKS[name], queue
        )
    inputs = [{"k0": i} for i in range(n)]
    for call in contenders.values():  # warm up: imports, connections, pool processes
        call(inputs[:20])
    seconds: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(rounds):
        for label, call in contenders.items():
            seconds[label].append(timed(call, inputs))
    base = statistics.median(seconds["in process"]) / n
    print(f"\n{name} flow, {n} inputs, {rounds} rounds (medians)")
    print(f"{'':22} {'flows/s':>10} {'us/flow':>10} {'overhead us':>12} {'ratio':>8}")
    for label, values in seconds.items():
        per_flow = statistics.median(values) / n
        overhead = (per_flow - base) * 1e6
        print(f"{label:22} {1 / per_flow:10.0f} {per_flow * 1e6:10.1f} {overhead:12.1f} {per_flow / base:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-ms", type=float, default=2.0, help="the blocking step of the 'work' flow")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_app.py").write_text(APP_MODULE)
        redis_server, url = start_redis(folder)
        workers = []
        try:
            os.environ["BENCH_REDIS"] = url
            os.environ["BENCH_WORK_MS"] = str(args.work_ms)
            sys.path.insert(0, str(folder))
            import bench_app

            queues = {1: "bench-1", 2: "bench-2"}
            workers = [start_worker(folder, url, queue, p, args.work_ms) for p, queue in queues.items()]
            wait_ready(bench_app.app, [f"{queue}@127.0.0.1" for queue in queues.values()])
            print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, Redis at {url}")
            for name in ("trivial", "work"):
                scenario(name, bench_app, queues, args.inputs, args.rounds)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
            redis_server.terminate()
            redis_server.wait(10)


if __name__ == "__main__":
    main()
