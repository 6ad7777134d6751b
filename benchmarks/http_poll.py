"""Per-poll overhead of service_flow's `Poll` against a hand-written `requests` loop and httsleep.

A local server (a separate process, stdlib ``http.server`` with keep-alive) answers
``{"status": "PENDING"}`` to a job's first polls and ``{"status": "SUCCESS"}`` to its
20th.  Each contender polls fresh jobs until success, with no wait between polls, so
what is measured is the client's work per poll plus the round trip, which is the same
for all.  Printed, in microseconds per poll and as throughput over the floor's measured in
the same process and round (above 1 is faster than the floor), median and range:

- floor: a hand-written loop on a `requests.Session` (``get``, check the status and one
  JSON field, close, repeat);
- ``Poll``: ``Poll(client.get(...).capture(...), until=Status(200) & (JsonPath("$.status")
  == "SUCCESS"), interval=0)``, structlog configured as in production;
- httsleep 0.3.1 (``until={"status_code": 200, "jsonpath": [...]}`` with a precompiled
  expression, ``polling_interval=0``), installed with ``pip install --target`` into a
  temporary folder and run in a subprocess against its own floor.

Run: ``python benchmarks/http_poll.py [--rounds 15]``.  Quote the medians and ranges.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from _install import install_into

POLLS = 20  # polls per job: 19 PENDING, then SUCCESS
JOBS_PER_SAMPLE = 10

SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

hits = {}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real API would
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[-1])
        count = hits[self.path] = hits.get(self.path, 0) + 1
        body = {"status": "SUCCESS", "result": count} if count >= n else {"status": "PENDING"}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def floor_poll(session: Any, url: str) -> int:
    """What a person would write by hand with requests."""
    for _ in range(POLLS + 5):
        response = session.get(url, timeout=(3.05, 30.0))
        if response.status_code == 200:
            body = response.json()
            if body.get("status") == "SUCCESS":
                response.close()
                return int(body["result"])
        response.close()
    raise RuntimeError("never succeeded")


def per_poll_us(call: Callable[[], object], jobs: int = JOBS_PER_SAMPLE) -> float:
    """Microseconds per poll of *call*, which polls one fresh job to success per call."""
    started = time.perf_counter_ns()
    for _ in range(jobs):
        call()
    return (time.perf_counter_ns() - started) / jobs / POLLS / 1000


def measure(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds: each round times every contender once, floor first."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            results[name].append(per_poll_us(call))
    return results


HTTSLEEP_SCRIPT = """
import itertools, json, sys
sys.path.insert(0, sys.argv[1])
import jsonpath_rw, requests
from httsleep import HttSleeper
exec(sys.argv[2])  # defines floor_poll, per_poll_us, measure, POLLS, JOBS_PER_SAMPLE
base, rounds = sys.argv[3], int(sys.argv[4])
jobs = itertools.count()
session = requests.Session()
status = jsonpath_rw.parse("$.status")

def sleeper():
    url = f"{base}/hs/{next(jobs)}/{POLLS}"
    until = {"status_code": 200, "jsonpath": [{"expression": status, "value": "SUCCESS"}]}
    response = HttSleeper(url, until=until, session=session, polling_interval=0, max_retries=POLLS + 5).run()
    response.close()

floor_jobs = itertools.count()
floor = lambda: floor_poll(session, f"{base}/hsfloor/{next(floor_jobs)}/{POLLS}")
sleeper(); floor()
print(json.dumps(measure({"floor": floor, "httsleep": sleeper}, rounds)))
"""


def run_httsleep(base: str, rounds: int) -> dict[str, list[float]] | str:
    """Measure httsleep 0.3.1 in a subprocess; a reason string when it cannot."""
    with tempfile.TemporaryDirectory() as target:
        failure = install_into(target, "httsleep==0.3.1")
        if failure is not None:
            return failure
        import inspect

        helpers = "\n".join(
            [
                "from typing import Any, Callable",
                "import time",
                f"POLLS = {POLLS}",
                f"JOBS_PER_SAMPLE = {JOBS_PER_SAMPLE}",
            ]
            + [inspect.getsource(f) for f in (floor_poll, per_poll_us, measure)]
        )
        done = subprocess.run(
            [sys.executable, "-c", HTTSLEEP_SCRIPT, target, helpers, base, str(rounds)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": target},
            cwd=target,
        )
        if done.returncode != 0:
            return f"httsleep failed to run: {done.stderr.strip()[-300:]}"
        result: dict[str, list[float]] = json.loads(done.stdout)
        return result


def configure_structlog() -> None:
    """structlog as an application in production would have it: INFO and up, loggers cached."""
    import structlog

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO), cache_logger_on_first_use=True
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved measurement rounds (default 15)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import requests

    from service_flow.http import Client
    from service_flow.http.conditions import JsonPath, Status
    from service_flow.http.poll import Poll

    configure_structlog()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None  # noqa: S101
        base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        print(f"Python {sys.version.split()[0]}, {args.rounds} interleaved rounds, {POLLS} polls per job\n")
        session = requests.Session()
        client = Client(base)
        poll = Poll(
            client.get("/sf/{job}/{n}").capture("result", "$.result"),
            until=Status(200) & (JsonPath("$.status") == "SUCCESS"),
            max_attempts=POLLS + 5,
            interval=0,
        )
        floor_jobs, poll_jobs = itertools.count(), itertools.count()
        contenders = {
            "floor (hand-written requests)": lambda: floor_poll(session, f"{base}/floor/{next(floor_jobs)}/{POLLS}"),
            "service_flow Poll": lambda: poll({"job": next(poll_jobs), "n": POLLS}),
        }
        assert poll({"job": "check", "n": POLLS}) == {"result": POLLS}  # noqa: S101
        for call in contenders.values():
            call()  # warm up connections
        results = measure(contenders, args.rounds)
        rows = [(name, times, results["floor (hand-written requests)"]) for name, times in results.items()]
        original = run_httsleep(base, args.rounds)
        if not isinstance(original, str):
            rows.append(("httsleep 0.3.1 (subprocess)", original["httsleep"], original["floor"]))
        print("Throughput ratio = polls/s of the contender / polls/s of the hand-written requests loop")
        print("in the same round (above 1: faster); median (min-max) over the rounds.\n")
        header = f"{'contender':<34}{'us/poll':>9}  {'throughput vs loop':<20}"
        print(header)
        print("-" * len(header))
        for name, times, floors in rows:
            ratios = [f / t for t, f in zip(times, floors)]
            spread = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            print(f"{name:<34}{statistics.median(times):>9.1f}  {spread:<20}")
        if isinstance(original, str):
            print(f"{'httsleep 0.3.1':<34}  {original}")
        print("\nGoal: Poll at >= 1.05x the throughput of the hand-written loop.")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
