"""Failing inputs leave no connection open: errors keep a ResponseInfo, never a live response.

The server runs in a subprocess, so every socket this process holds is a client's.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
import requests

from service_flow import Driver, Flow, RetryPolicy
from service_flow.http import AsyncClient, Client, JsonPath, Poll, ResponseInfo

if TYPE_CHECKING:
    from collections.abc import Iterator

SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        parts = self.path.split("?")[0].split("/")
        status, pad = int(parts[1]), int(parts[2])
        data = json.dumps({"error": "nope", "pad": "x" * pad}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer.request_queue_size = 128
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts sockets in /proc/self/fd")


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    yield f"http://127.0.0.1:{process.stdout.readline().strip()}"
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed meanwhile
        return ""


def open_sockets() -> int:
    return sum(1 for fd in Path("/proc/self/fd").iterdir() if _target(fd).startswith("socket:"))


def attempt(errors: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as error:  # kept, as a dead letter would be
        errors.append(error)


def collect() -> None:
    """Collect garbage; what other tests' garbage warns about on the way is theirs."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.collect()
    finally:
        sys.unraisablehook = hook


def live_responses() -> int:
    collect()
    return sum(1 for o in gc.get_objects() if type(o) is requests.Response)  # no isinstance: lazy proxies


@pytest.fixture(autouse=True)
def _no_garbage_of_other_tests() -> None:
    collect()  # so that the counts are ours


@pytest.mark.parametrize("route", ["/404/10", "/200/10", "/503/20000"])
def test_thousands_of_dead_letters_leave_no_socket_open_after_teardown(base: str, route: str) -> None:
    before = open_sockets()
    client = Client(base)
    # 404: ResponseError; 200: the capture fails; 503 with a body longer than the excerpt's prefix.
    flow = client.get(route + "?n={n}").capture("a", "$.a")
    report = Driver(flow, workers=8, retry=RetryPolicy(max_attempts=1)).run({"n": n} for n in range(600))
    assert len(report.dead_letters) == 600
    client.teardown()
    assert open_sockets() <= before  # (an earlier test's event loop may close meanwhile)
    assert live_responses() == 0  # the dead letters hold none
    kept = [letter.error.response for letter in report.dead_letters]  # type: ignore[attr-defined]
    assert all(info is None or isinstance(info, ResponseInfo) for info in kept)
    assert sum(isinstance(info, ResponseInfo) for info in kept) > 500  # (a busy machine may refuse a few)


def test_failing_polls_and_refused_connections_leave_no_socket_open(base: str) -> None:
    before = open_sockets()
    client = Client(base)
    poll = Poll(client.get("/200/10"), until=JsonPath("$.status") == "done", max_attempts=3, interval=0)
    refused = Client("http://127.0.0.1:9").get("/x")  # nothing listens on the discard port
    errors: list[BaseException] = []
    for _ in range(100):
        for service in (poll, refused):
            attempt(errors, lambda: Flow(service)({}))  # noqa: B023 - called at once
    assert len(errors) == 200
    client.teardown()
    refused.client.teardown()
    assert open_sockets() <= before  # (an earlier test's event loop may close meanwhile)
    assert live_responses() == 0


def test_async_failing_runs_leave_no_socket_open(base: str) -> None:
    before = open_sockets()
    errors: list[BaseException] = []

    async def main() -> None:
        async with AsyncClient(base) as client:
            flow = client.get("/404/20000").capture("a", "$.a")
            for _ in range(150):
                try:
                    await flow({})
                except Exception as error:  # noqa: PERF203 - kept, as a dead letter would be
                    errors.append(error)

    asyncio.run(main())
    assert len(errors) == 150
    collect()
    assert open_sockets() <= before  # (an earlier test's event loop may close meanwhile)
    assert all(isinstance(e.response, ResponseInfo) for e in errors)  # type: ignore[attr-defined]
