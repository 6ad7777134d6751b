"""Cost of service_flow.http against raw `requests` and httporchestrator, on a local server.

The flow, as a user would write it: GET ``/users/{user_id}``, check the status, capture
``$.data``; POST ``/audit`` with the captured id, check the status.  Contenders:

- floor: the same two calls on a raw `requests.Session` (``session.get``/``session.post``,
  as a user writes them), statuses checked, JSON read;
- ``flow(ctx)`` and ``flow.run(ctx)``: two `Request` services through one `Client`
  (structlog configured as in production: filtering at INFO, loggers cached);
- httporchestrator 1.0.2 (on httpx) doing the same flow with a shared ``httpx.Client``,
  installed with ``pip install --target`` into a temporary folder and run in a
  subprocess, with its own raw-requests floor measured there in the same rounds.

Then throughput of 16 threads sharing one `Client` against 1 thread (and the same for a
raw session, for scale).  The server is the standard library's ThreadingHTTPServer
speaking HTTP/1.1 with keep-alive, in a subprocess so it does not share our GIL.

Last, ``http_poll.py`` measures polling (per-poll cost against a hand-written loop and
httsleep 0.3.1).

Printed: throughput of each contender over the throughput of the raw session measured in
the same round (above 1 is faster than raw), median and range over the rounds; and the
client process's CPU per flow, raw and ours (the server runs in another process), which a
busy machine disturbs less than wall time.

Run: ``python benchmarks/http_services.py [--rounds 9]``.  Quote the medians and ranges.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from _install import install_into

HERE = Path(__file__).resolve().parent

TIMEOUT = (3.05, 30.0)


# -- the server -------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    wbufsize = 65536  # headers and body leave in one segment (flushed after each request)

    def do_GET(self) -> None:
        user_id = int(self.path.rsplit("/", 1)[1])
        self._json(200, {"data": {"id": user_id, "name": "Ada", "roles": ["admin", "dev"]}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._json(201, {"ok": True, "user": body["user"]})

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None  # noqa: S101 - asked for with PIPE
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


# -- measuring --------------------------------------------------------------------------


def per_call_us(call: Callable[[], object], budget: float = 0.25) -> float:
    """Microseconds per call of *call*, over as many calls as fit in *budget* seconds."""
    loops = 1
    while True:
        started = time.perf_counter()
        for _ in range(loops):
            call()
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            return elapsed / loops * 1e6
        loops *= 2


def measure(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds: each round times every contender once, floor first."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for call in contenders.values():
        call()  # warm up: connections open, caches filled
    for _ in range(rounds):
        for name, call in contenders.items():
            results[name].append(per_call_us(call))
    return results


def make_raw(base: str) -> Callable[[], object]:
    """The floor: what a person writes with requests, statuses checked."""
    import requests
    import requests.adapters

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def flow() -> object:
        response = session.get(f"{base}/users/{7}", timeout=TIMEOUT)
        if response.status_code != 200:
            raise RuntimeError(response.status_code)
        user = response.json()["data"]
        response = session.post(f"{base}/audit", json={"user": user["id"]}, timeout=TIMEOUT)
        if response.status_code != 201:
            raise RuntimeError(response.status_code)
        return user

    return flow


# -- httporchestrator, in a subprocess --------------------------------------------------

ORCHESTRATOR_SCRIPT = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from loguru import logger
logger.remove()  # like our production setting: nothing below INFO is built
logger.add(open(__import__("os").devnull, "w"), level="WARNING")
import httpx
from httporchestrator import Flow, RequestStep
exec(sys.argv[2])  # defines per_call_us, measure, make_raw, TIMEOUT
base, rounds = sys.argv[3], int(sys.argv[4])
flow = Flow(
    name="audit",
    base_url=base,
    log_details=False,
    steps=(
        RequestStep("get user")
        .get(lambda state: f"/users/{state['user_id']}")
        .capture("user", lambda response, state: response.json()["data"])
        .check(lambda response, state: response.status_code == 200, "status 200"),
        RequestStep("audit")
        .post("/audit")
        .json(lambda state: {"user": state["user"]["id"]})
        .check(lambda response, state: response.status_code == 201, "status 201"),
    ),
)
client = httpx.Client(timeout=httpx.Timeout(30.0, connect=3.05))
run = flow.run({"user_id": 7}, client=client)
assert run.success, run
raw = make_raw(base)
out = measure({"floor": raw, "orchestrator": lambda: flow.run({"user_id": 7}, client=client)}, rounds)
print(json.dumps(out))
"""


def run_orchestrator(base: str, rounds: int) -> dict[str, list[float]] | str:
    """Measure httporchestrator 1.0.2 in a subprocess; a reason string when it cannot."""
    import inspect

    with tempfile.TemporaryDirectory() as target:
        failure = install_into(target, "httporchestrator==1.0.2")
        if failure is not None:
            return failure
        helpers = "\n".join(
            ["import time", "from typing import Any, Callable", f"TIMEOUT = {TIMEOUT!r}"]
            + [inspect.getsource(f) for f in (per_call_us, measure, make_raw)]
        )
        done = subprocess.run(
            [sys.executable, "-c", ORCHESTRATOR_SCRIPT, target, helpers, base, str(rounds)],
            capture_output=True,
            text=True,
            check=False,
            cwd=target,
        )
        if done.returncode != 0:
            return f"httporchestrator failed to run: {done.stderr.strip()[-300:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- service_flow -----------------------------------------------------------------------


def configure_structlog() -> None:
    """Production logging: filtering at INFO, loggers cached (per-request events cost nothing)."""
    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def make_flow(base: str) -> tuple[Any, Any]:
    from service_flow.http import Client

    client = Client(base)
    flow = client.get("/users/{user_id}").check(status=200).capture("user", "$.data") >> client.post(
        "/audit", json=lambda ctx: {"user": ctx["user"]["id"]}
    ).check(status=201)
    return client, flow


def throughput(call: Callable[[], object], threads: int, seconds: float) -> float:
    """Flows per second with *threads* threads calling *call* for *seconds*."""
    stop = threading.Event()
    counts = [0] * threads
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            while not stop.is_set():
                call()
                counts[index] += 1
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in workers:
        thread.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - started)


def spread(values: list[float]) -> str:
    """Median and range, as ``1.12 (1.05-1.20)``."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def report_sequential(base: str, rounds: int, orchestrator: dict[str, list[float]] | str) -> None:
    _client, flow = make_flow(base)
    raw = make_raw(base)
    inputs = {"user_id": 7}
    assert flow(inputs)["user"] == raw()  # noqa: S101 - the same work
    results = measure(
        {
            "floor (raw requests.Session)": raw,
            "service_flow flow(ctx)": lambda: flow(inputs),
            "service_flow flow.run(ctx)": lambda: flow.run(inputs),
        },
        rounds,
    )
    floor = results["floor (raw requests.Session)"]
    rows = [(name, times, floor) for name, times in results.items()]
    if not isinstance(orchestrator, str):
        rows.append(("httporchestrator 1.0.2 (subprocess)", orchestrator["orchestrator"], orchestrator["floor"]))
    print("Throughput ratio = flows/s of the contender / flows/s of raw requests.Session in the same round")
    print("(above 1: faster than raw requests); median (min-max) over the rounds.\n")
    header = f"{'contender':<38}{'us/flow':>10}  {'throughput vs raw':<20}"
    print(header)
    print("-" * len(header))
    for name, times, floors in rows:
        ratios = [f / t for t, f in zip(times, floors)]
        print(f"{name:<38}{statistics.median(times):>10.1f}  {spread(ratios):<20}")
    if isinstance(orchestrator, str):
        print(f"{'httporchestrator 1.0.2':<38}  {orchestrator}")
    cpu = client_cpu(raw, lambda: flow(inputs), rounds)
    ratios = [r / o for r, o in zip(cpu["raw"], cpu["ours"])]
    print(
        f"{'client CPU per flow (us): raw / ours':<38}{statistics.median(cpu['raw']):>10.1f} / "
        f"{statistics.median(cpu['ours']):.1f}  raw over ours: {spread(ratios)}"
    )
    own = own_cost_us(flow, inputs)
    share = own / statistics.median(floor)
    print(f"{'our code alone (build + interpret)':<38}{own:>10.1f}  ({share:.3f} of a raw flow's time)")
    print("Goal: flow(ctx) at >= 1.05x the throughput of raw requests.Session.\n")


def client_cpu(raw: Callable[[], object], ours: Callable[[], object], rounds: int) -> dict[str, list[float]]:
    """CPU microseconds of this process per flow (the server runs elsewhere), interleaved rounds.

    Less disturbed by a busy machine than wall time: what the client itself spends per flow.
    """
    results: dict[str, list[float]] = {"raw": [], "ours": []}
    calls = 200
    for _ in range(rounds):
        for name, call in (("raw", raw), ("ours", ours)):
            started = time.process_time()
            for _ in range(calls):
                call()
            results[name].append((time.process_time() - started) / calls * 1e6)
    return results


def own_cost_us(flow: Any, inputs: dict[str, Any]) -> float:
    """Microseconds per flow spent in service_flow.http itself: both steps' build and interpret.

    The network round trips dominate the ratios above and make them noisy on a busy
    machine; this isolates what the library adds, on the real responses, replayed.
    """
    first, second = (step.service for step in flow.iter_steps())
    ctx = dict(inputs)
    out1 = first.build(ctx)
    response1 = first.client.send(out1)
    first.read_body(response1, out1)
    ctx.update(first.interpret(response1, out1))
    out2 = second.build(ctx)
    response2 = second.client.send(out2)
    second.read_body(response2, out2)

    def replay() -> object:
        context = dict(inputs)
        out = first.build(context)
        context.update(first.interpret(response1, out))
        out = second.build(context)
        return second.interpret(response2, out)

    return statistics.median(per_call_us(replay, budget=0.05) for _ in range(9))


def report_threads(base: str, seconds: float, rounds: int) -> None:
    client, flow = make_flow(base)
    raw = make_raw(base)
    inputs = {"user_id": 7}
    ours: dict[int, list[float]] = {1: [], 16: []}
    floor: dict[int, list[float]] = {1: [], 16: []}
    for _ in range(max(3, rounds // 3)):
        for threads in (1, 16):
            ours[threads].append(throughput(lambda: flow(inputs), threads, seconds))
            floor[threads].append(throughput(raw, threads, seconds))
    print(f"{'threads over one client':<38}{'flows/s':>10}{'x 1 thread':>11}")
    print("-" * 59)
    for label, data in (("service_flow Client", ours), ("raw requests.Session", floor)):
        for threads in (1, 16):
            rate = statistics.median(data[threads])
            print(f"{label + f', {threads} thread(s)':<38}{rate:>10.0f}{rate / statistics.median(data[1]):>11.2f}")
    for threads in (1, 16):
        ratios = [ours / raw for ours, raw in zip(ours[threads], floor[threads])]
        print(f"{f'throughput vs raw, {threads} thread(s)':<38}{spread(ratios):>21}")
    print(f"({os.cpu_count()} CPUs; the server shares them.)\n")
    client.teardown()


# -- polling ----------------------------------------------------------------------------
def report_polling(rounds: int) -> None:
    """The polling part lives in http_poll.py (its own server and httsleep install)."""
    print("\nPolling (benchmarks/http_poll.py)")
    subprocess.run([sys.executable, str(HERE / "http_poll.py"), "--rounds", str(rounds)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved measurement rounds (default 9)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per throughput sample (default 1)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    sys.path.insert(0, str(HERE.parent))
    configure_structlog()
    server, base = start_server()
    try:
        print(f"Python {sys.version.split()[0]}, {args.rounds} interleaved rounds\n")
        orchestrator = run_orchestrator(base, args.rounds)
        report_sequential(base, args.rounds, orchestrator)
        report_threads(base, args.seconds, args.rounds)
    finally:
        server.terminate()
        server.wait()
    report_polling(args.rounds)


if __name__ == "__main__":
    main()
