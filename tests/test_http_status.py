"""Status mapping, Retry-After, transport errors and transport retries, against a real server."""

from __future__ import annotations

import email.utils
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Callable

import pytest
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from service_flow import ErrorKind, Fatal, Retry, StopFlow, classify
from service_flow.exceptions import ConfigurationError
from service_flow.http import (
    MAX_RETRY_AFTER,
    Action,
    CheckFailed,
    Client,
    FatalHTTPError,
    HTTPStopped,
    ResponseError,
    RetriesExhausted,
    RetryableHTTPError,
    StatusMap,
    TransportError,
    parse_retry_after,
)
from service_flow.testing import FakeClock

if TYPE_CHECKING:
    from pytest_httpserver import HTTPServer


@pytest.fixture
def api(httpserver: HTTPServer) -> Client:
    client = Client(httpserver.url_for(""))
    yield client
    client.teardown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_5xx_and_429_raise_retry(httpserver: HTTPServer, api: Client, status: int) -> None:
    httpserver.expect_request("/x").respond_with_data("busy", status=status)
    with pytest.raises(RetryableHTTPError) as caught:
        api.get("/x")({})
    assert isinstance(caught.value, Retry)
    assert classify(caught.value) is ErrorKind.RETRY
    assert caught.value.status == status
    assert caught.value.delay is None  # no Retry-After: the policy decides


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_raise_a_failure_carrying_the_response(httpserver: HTTPServer, api: Client, status: int) -> None:
    httpserver.expect_request("/x").respond_with_json({"error": "nope"}, status=status, headers={"X-Trace": "t1"})
    with pytest.raises(ResponseError) as caught:
        api.get("/x")({})
    error = caught.value
    assert not isinstance(error, (Retry, Fatal))
    assert classify(error) is ErrorKind.FAIL
    assert error.response is not None
    assert error.response.status_code == status
    assert error.response.headers["X-Trace"] == "t1"
    assert '"error": "nope"' in error.response.excerpt
    assert f"-> {status}" in str(error)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_becomes_the_delay(httpserver: HTTPServer, api: Client, status: int) -> None:
    httpserver.expect_request("/x").respond_with_data("", status=status, headers={"Retry-After": "7"})
    with pytest.raises(RetryableHTTPError) as caught:
        api.get("/x")({})
    assert caught.value.delay == 7.0


class SkewedClockHandler(BaseHTTPRequestHandler):
    """A server whose clock is an hour behind, answering 503 with a Retry-After date 30 s ahead."""

    skew = -3600.0

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.skew, usegmt=True)

    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Retry-After", email.utils.formatdate(time.time() + self.skew + 30, usegmt=True))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_retry_after_as_an_http_date_is_measured_against_the_server_date() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SkewedClockHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(RetryableHTTPError) as caught:
            client.get("/x")({})
    finally:
        server.shutdown()
        server.server_close()
    # Against our clock the date is an hour past (0 s); against the server's, 30 s.
    assert caught.value.delay is not None
    assert 29 <= caught.value.delay <= 31


def test_retry_after_as_an_http_date_without_a_date_header_uses_our_clock() -> None:
    value = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(value, now=1_000_000) == 30.0
    joined = f"{email.utils.formatdate(1_000_000, usegmt=True)}, {email.utils.formatdate(5, usegmt=True)}"
    assert parse_retry_after(value, date=joined) == 30.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-5", None),  # negative: ignored, the policy's backoff applies
        ("soon", None),  # unreadable: ignored
        ("nan", None),
        ("99999999", MAX_RETRY_AFTER),  # huge: capped
        ("1e400", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: now
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    ],
)
def test_odd_retry_after_values_are_ignored_or_capped(
    httpserver: HTTPServer, api: Client, value: str, expected: float | None
) -> None:
    httpserver.expect_request("/x").respond_with_data("", status=503, headers={"Retry-After": value})
    with pytest.raises(RetryableHTTPError) as caught:
        api.get("/x")({})
    assert caught.value.delay == expected


def test_the_retry_after_cap_is_a_client_setting(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("", status=429, headers={"Retry-After": "600"})
    client = Client(httpserver.url_for(""), max_retry_after=5)
    with pytest.raises(RetryableHTTPError) as caught:
        client.get("/x")({})
    assert caught.value.delay == 5.0
    assert parse_retry_after("600", cap=900) == 600.0


def test_post_is_not_retried_on_a_5xx_unless_asked(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/orders", method="POST").respond_with_data("oops", status=500)
    with pytest.raises(ResponseError) as caught:
        api.post("/orders", json={})({})
    assert not isinstance(caught.value, Retry)
    with pytest.raises(RetryableHTTPError):
        api.post("/orders", json={}, idempotent=True)({})
    with pytest.raises(RetryableHTTPError):
        api.put("/orders", json={})({})


def test_429_on_a_post_is_retried(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/orders", method="POST").respond_with_data("", status=429)
    with pytest.raises(RetryableHTTPError):
        api.post("/orders", json={})({})


def test_a_status_check_does_not_stop_retries(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_data("", status=503, headers={"Retry-After": "2"})
    with pytest.raises(RetryableHTTPError) as caught:
        api.get("/x").check(status=200)({})
    assert not isinstance(caught.value, CheckFailed)
    assert caught.value.delay == 2.0


def test_every_mapping_is_overridable_per_client_and_per_request(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/missing").respond_with_json({"error": "gone"}, status=404)
    httpserver.expect_request("/down").respond_with_data("", status=503)
    httpserver.expect_request("/auth").respond_with_data("", status=401)
    httpserver.expect_request("/done").respond_with_data("", status=410)
    client = Client(httpserver.url_for(""), on_status={404: "ok", "5xx": "fail", 401: Action.FATAL})

    assert client.get("/missing").capture("error", "$.error")({}) == {"error": "gone"}
    with pytest.raises(ResponseError):
        client.get("/down")({})
    with pytest.raises(FatalHTTPError) as fatal:
        client.get("/auth")({})
    assert isinstance(fatal.value, Fatal)
    with pytest.raises(HTTPStopped) as stopped:
        client.get("/done", on_status={410: "stop"})({})
    assert isinstance(stopped.value, StopFlow)
    # The request's own mapping wins over the client's.
    with pytest.raises(RetryableHTTPError):
        client.get("/down", on_status={503: "retry"})({})
    with pytest.raises(ResponseError):
        client.get("/missing", on_status={404: "fail"})({})


def test_a_remapped_2xx_is_honoured(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/accepted").respond_with_data("", status=202)
    with pytest.raises(RetryableHTTPError):
        api.get("/accepted", on_status={202: "retry"})({})


def test_status_map_rejects_bad_keys() -> None:
    with pytest.raises(ConfigurationError, match="on_status keys"):
        StatusMap({"404s": "ok"})
    assert StatusMap({"4XX": "ok"}).action(418, idempotent=True) is Action.OK


def test_connection_refused_is_a_retry_even_for_a_post() -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", timeout=(1, 1))
    for step in (client.get("/x"), client.post("/x", json={})):
        with pytest.raises(RetryableHTTPError) as caught:
            step({})
        assert caught.value.response is None
        assert caught.value.status is None


def test_a_read_timeout_is_a_retry_for_get_and_a_failure_for_post(httpserver: HTTPServer) -> None:
    def slow(request: WRequest) -> WResponse:
        time.sleep(0.3)
        return WResponse("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    client = Client(httpserver.url_for(""), timeout=(1, 0.05))
    with pytest.raises(RetryableHTTPError, match="ReadTimeout"):
        client.get("/slow")({})
    with pytest.raises(TransportError, match="may have processed this POST"):
        client.post("/slow", json={})({})


def test_tls_failures_are_not_retried(httpserver: HTTPServer) -> None:
    client = Client(httpserver.url_for("").replace("http://", "https://"))
    assert client.verify is True  # verification on by default
    assert client.session.verify in (True, os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"))
    with pytest.raises(TransportError, match="SSLError"):
        client.get("/x")({})


def test_transport_retries_use_urllib3_and_wait_on_the_clock(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    httpserver.expect_ordered_request("/x").respond_with_data("", status=503, headers={"Retry-After": "2"})
    httpserver.expect_ordered_request("/x").respond_with_data("", status=502)
    httpserver.expect_ordered_request("/x").respond_with_json({"ok": True})
    client = Client(httpserver.url_for(""), retries=3, clock=clock)
    assert client.get("/x").capture("ok", "$.ok")({}) == {"ok": True}
    assert clock.sleeps[0] == 2.0  # Retry-After honoured, then urllib3's backoff
    assert len(clock.sleeps) == 2
    assert len(httpserver.log) == 3


def test_running_out_of_transport_retries_raises_our_error(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    httpserver.expect_request("/x").respond_with_data("busy", status=500)
    client = Client(httpserver.url_for(""), retries=2, clock=clock)
    with pytest.raises(RetriesExhausted) as caught:
        client.get("/x").check(status=200)({})
    assert caught.value.attempts == 3
    assert caught.value.status == 500
    assert isinstance(caught.value, Retry)
    assert len(httpserver.log) == 3


def test_transport_retries_cap_a_huge_retry_after(httpserver: HTTPServer) -> None:
    clock = FakeClock()
    httpserver.expect_ordered_request("/x").respond_with_data("", status=429, headers={"Retry-After": "86400"})
    httpserver.expect_ordered_request("/x").respond_with_data("ok")
    client = Client(httpserver.url_for(""), retries=1, clock=clock, max_retry_after=3)
    client.get("/x")({})
    assert clock.sleeps == [3.0]


def test_transport_retries_leave_posts_alone(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x", method="POST").respond_with_data("", status=503)
    client = Client(httpserver.url_for(""), retries=3, clock=FakeClock())
    with pytest.raises(ResponseError):
        client.post("/x", json={})({})
    assert len(httpserver.log) == 1


def blocking_pool_of_one(client: Client) -> None:
    """One pooled connection, waited for when taken: a response never released would hang."""
    client.session.get_adapter("http://").init_poolmanager(1, 1, block=True)


def run_briefly(func: Callable[[], object], seconds: float = 10) -> list[object]:
    """Run ``func`` in a thread; fail (instead of hanging) if it does not finish in time."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(func())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "a connection was never given back to the pool"
    return outcome


def test_responses_discarded_by_a_retry_are_closed(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/x").respond_with_data("first", status=503)
    httpserver.expect_ordered_request("/x").respond_with_data("second", status=503)
    httpserver.expect_ordered_request("/x").respond_with_data("third")
    client = Client(httpserver.url_for(""), retries=2, clock=FakeClock())
    blocking_pool_of_one(client)
    ok = client.get("/x").capture("body", lambda r: r.text)
    assert run_briefly(lambda: ok({})) == [{"body": "third"}]

    httpserver.clear()
    httpserver.expect_request("/y").respond_with_data("busy", status=503)
    failing = client.get("/y")
    for _ in range(2):  # the error path gives its connection back too
        (outcome,) = run_briefly(lambda: failing({}))
        assert isinstance(outcome, RetriesExhausted)
    assert len(httpserver.log) == 6
