"""The client: its session as a resource, limits, logging, and bodies that are hard to log."""

from __future__ import annotations

import logging
import pickle
import socket
import socketserver
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests
import structlog
from pytest_httpserver import HTTPServer
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

import service_flow.http
from service_flow import Flow, Resources
from service_flow.http import (
    BearerAuth,
    Client,
    ConcurrencyLimit,
    RateLimit,
    Request,
    ResponseError,
    RetryableHTTPError,
    TransportError,
)
from service_flow.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def threaded() -> Iterator[HTTPServer]:
    """A server answering requests concurrently (the default one answers one at a time)."""
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def api(httpserver: HTTPServer) -> Iterator[Client]:
    client = Client(httpserver.url_for(""))
    yield client
    client.teardown()


class InFlight:
    """A server handler counting the requests it is serving at once."""

    def __init__(self, hold: float = 0.05) -> None:
        self.hold = hold
        self.now = 0
        self.peak = 0
        self.served = 0
        self.lock = threading.Lock()

    def __call__(self, request: WRequest) -> WResponse:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.hold)
        with self.lock:
            self.now -= 1
            self.served += 1
        return WResponse('{"ok": true}', content_type="application/json")


def run_threads(count: int, func: Any) -> list[Any]:
    results: list[Any] = []
    lock = threading.Lock()

    def target() -> None:
        try:
            value = func()
        except Exception as error:
            value = error
        with lock:
            results.append(value)

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# -- the session ------------------------------------------------------------------------


def test_the_session_is_created_once_even_when_threads_race_for_it() -> None:
    client = Client("http://127.0.0.1:9")
    barrier = threading.Barrier(16)

    def first_use() -> requests.Session:
        barrier.wait()
        return client.session

    sessions = run_threads(16, first_use)
    assert len({id(s) for s in sessions}) == 1
    client.teardown()


def test_setup_recreates_and_teardown_closes_the_session(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"ok": True})
    step = api.get("/x")
    step({})
    first = api.session
    api.setup()
    second = api.session
    assert second is not first
    assert not first.adapters["http://"].poolmanager.pools  # the old connections are closed
    api.teardown()
    assert api._session is None
    assert step({}) == {}  # the next request opens a new session
    assert api.session is not second


def test_a_restart_of_the_flows_resources_renews_the_session(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"ok": True})
    flow = Flow(api.get("/x")) >> api.get("/x")
    flow({})
    before = api.session
    Resources.of(flow).restart()
    assert api.session is not before
    assert flow({}) == {}


def test_no_shared_session_between_clients_or_at_module_level() -> None:
    one, two = Client(), Client()
    assert one.session is not two.session
    a, b = Request.get("http://127.0.0.1:9/a"), Request.get("http://127.0.0.1:9/b")
    assert a.client is not b.client
    for module in [m for name, m in sys.modules.items() if name.startswith("service_flow.http")]:
        assert not [v for v in vars(module).values() if isinstance(v, (requests.Session, Client))], module
    one.teardown()
    two.teardown()


def test_a_client_pickles_without_its_session_and_works_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x", headers={"Authorization": "Bearer t1"}).respond_with_json({"ok": True})
    client = Client(httpserver.url_for(""), auth=BearerAuth(token_source), retries=2, headers={"X-A": "1"})
    client.get("/x")({})
    copy = pickle.loads(pickle.dumps(client))
    assert copy._session is None
    assert copy.headers == {"X-A": "1"}
    assert copy.get("/x").capture("ok", "$.ok")({}) == {"ok": True}
    client.teardown()
    copy.teardown()


def token_source() -> str:
    return "t1"


# -- limits -----------------------------------------------------------------------------


def test_a_client_limit_holds_across_threads(threaded: HTTPServer) -> None:
    handler = InFlight()
    threaded.expect_request("/work").respond_with_handler(handler)
    client = Client(threaded.url_for(""), limits=[threading.BoundedSemaphore(2)])
    step = client.get("/work").capture("ok", "$.ok")
    results = run_threads(8, lambda: step({}))
    assert results == [{"ok": True}] * 8
    assert handler.peak <= 2
    assert handler.served == 8
    client.teardown()


def test_a_service_limit_applies_to_that_service_only(threaded: HTTPServer) -> None:
    limited, free = InFlight(), InFlight()
    threaded.expect_request("/limited").respond_with_handler(limited)
    threaded.expect_request("/free").respond_with_handler(free)
    client = Client(threaded.url_for(""))
    one_at_a_time = client.get("/limited", limits=[threading.BoundedSemaphore(1)])
    anything_goes = client.get("/free")
    run_threads(6, lambda: one_at_a_time({}))
    barrier = threading.Barrier(6)
    run_threads(6, lambda: (barrier.wait(), anything_goes({})))
    assert limited.peak == 1
    assert free.peak > 1
    client.teardown()


def test_a_client_runs_twice_with_the_same_limits_even_after_errors(threaded: HTTPServer) -> None:
    handler = InFlight(hold=0)
    threaded.expect_request("/ok").respond_with_handler(handler)
    threaded.expect_request("/bad").respond_with_data("no", status=404)
    semaphore = threading.BoundedSemaphore(1)
    client = Client(threaded.url_for(""), limits=[semaphore])
    flow = Flow(client.get("/ok")) >> client.get("/ok")
    for _ in range(2):
        for _ in range(3):
            with pytest.raises(ResponseError):
                client.get("/bad")({})
        assert run_threads(4, lambda: flow({})) == [{}] * 4
    assert handler.served == 16
    assert semaphore.acquire(blocking=False)  # every permit came back
    client.teardown()


# -- logging ----------------------------------------------------------------------------


def test_one_event_per_request_with_method_url_status_duration_attempt(
    httpserver: HTTPServer, api: Client, events: list[dict[str, Any]]
) -> None:
    httpserver.expect_request("/users/1").respond_with_json({"data": 1})
    httpserver.expect_request("/down").respond_with_data("", status=503)
    api.get("/users/{id}", params={"q": "x"})({"id": 1})
    with pytest.raises(RetryableHTTPError):
        api.get("/down")({})
    requests_logged = [e for e in events if e["event"] == "http.request"]
    assert len(requests_logged) == 2
    ok, down = requests_logged
    assert ok["log_level"] == "debug"
    assert ok["method"] == "GET"
    assert ok["url"] == api.base_url + "/users/1?q=x"
    assert ok["status"] == 200
    assert ok["attempt"] == 1
    assert ok["duration_ms"] >= 0
    assert ok["service"] == "GET /users/{id}"
    assert (down["log_level"], down["status"]) == ("warning", 503)


def test_no_debug_event_is_built_when_structlog_is_unconfigured_or_filters_it(
    httpserver: HTTPServer, api: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    httpserver.expect_request("/x").respond_with_json({})
    api.get("/x")({})
    assert "http.request" not in capsys.readouterr().out  # unconfigured: no debug lines printed
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    api.get("/x")({})
    assert "http.request" not in capsys.readouterr().out


def test_we_never_touch_the_root_logger_or_loggers_we_do_not_own(httpserver: HTTPServer, api: Client) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("urllib3").level, structlog.get_config())
    httpserver.expect_request("/x").respond_with_json({})
    httpserver.expect_request("/bad").respond_with_data("", status=500)
    api.get("/x")({})
    with pytest.raises(RetryableHTTPError):
        api.get("/bad")({})
    after = (list(root.handlers), root.level, logging.getLogger("urllib3").level, structlog.get_config())
    assert after == before


def test_binary_bodies_never_break_logging_or_errors(
    httpserver: HTTPServer, api: Client, events: list[dict[str, Any]]
) -> None:
    blob = bytes(range(256)) * 40
    httpserver.expect_request("/blob").respond_with_data(blob, status=500, content_type="application/octet-stream")
    httpserver.expect_request("/latin").respond_with_data("caf\xe9".encode("latin-1") * 3, status=404)
    with pytest.raises(RetryableHTTPError) as caught:
        api.get("/blob")({})
    assert f"<{len(blob)} bytes of binary content>" in str(caught.value)
    with pytest.raises(ResponseError) as latin:
        api.get("/latin")({})
    assert "caf" in str(latin.value)
    assert [e["status"] for e in events if e["event"] == "http.request"] == [500, 404]


class Truncated(socketserver.BaseRequestHandler):
    """Promises 1000 bytes of JSON, sends 10, hangs up."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"data": [1'
        )
        self.request.shutdown(socket.SHUT_RDWR)
        self.request.close()


@pytest.fixture
def truncating_url() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Truncated)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_truncated_body_is_a_transport_error_never_a_crash(truncating_url: str, events: list[dict[str, Any]]) -> None:
    client = Client(truncating_url)
    with pytest.raises(RetryableHTTPError):
        client.get("/x").capture("data", "$.data")({})
    with pytest.raises(TransportError, match="may have processed"):
        client.post("/x", json={})({})
    failed = [e for e in events if e["event"] == "http.request" and "error" in e]
    assert [e["log_level"] for e in failed] == ["warning", "warning"]  # the body broke off while read
    client.teardown()


def test_the_public_api_is_reexported() -> None:
    for name in service_flow.http.__all__:
        assert getattr(service_flow.http, name) is not None


# -- the library's own limits, attached to a client or a service -----------------------


def test_a_concurrency_limit_on_the_client_holds_across_threads(threaded: HTTPServer) -> None:
    handler = InFlight(hold=0.03)
    threaded.expect_request("/work").respond_with_handler(handler)
    client = Client(threaded.url_for(""), limits=[ConcurrencyLimit(3)])
    flow = Flow(client.get("/work")) >> client.get("/work")
    barrier = threading.Barrier(12)
    assert run_threads(12, lambda: (barrier.wait(), flow({}))[1]) == [{}] * 12
    assert handler.peak <= 3
    assert handler.served == 24
    client.teardown()


def test_a_rate_limit_on_a_service_spaces_its_requests_across_threads(threaded: HTTPServer) -> None:
    handler = InFlight(hold=0)
    threaded.expect_request("/work").respond_with_handler(handler)
    client = Client(threaded.url_for(""))
    limited = client.get("/work", limits=[RateLimit(4, per=0.25)])
    started = time.monotonic()
    run_threads(12, lambda: limited({}))
    # 12 calls at 4 per 0.25 s: the last batch cannot start before 0.5 s.
    assert time.monotonic() - started >= 0.45
    assert handler.served == 12
    client.teardown()


def test_a_rate_limit_runs_on_the_clock_it_is_given(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_json({})
    clock = FakeClock()
    client = Client(httpserver.url_for(""), limits=[RateLimit(2, per=1.0, clock=clock)])
    flow = Flow(client.get("/x")) >> client.get("/x")
    for _ in range(2):  # the same client and limits, twice
        flow({})
    assert clock.sleeps == [1.0]
    assert len(httpserver.log) == 4


@pytest.mark.parametrize(
    "options",
    [
        {"pool_size": "3"},
        {"pool_size": True},
        {"pool_size": 1.5},
        {"max_retry_after": float("nan")},
        {"max_retry_after": float("inf")},
        {"max_retry_after": "5"},
        {"max_retry_after": True},
        {"timeout": float("inf")},
        {"timeout": (1, float("inf"))},
    ],
)
def test_client_numbers_are_finite_numbers_refused_by_name(options: dict[str, Any]) -> None:
    from service_flow.exceptions import ConfigurationError
    from service_flow.http import AsyncClient

    (option,) = options
    for kind in (Client, AsyncClient):
        with pytest.raises(ConfigurationError, match=rf"^{kind.__name__}\({option}=\)"):
            kind("http://127.0.0.1:1", **options)
