"""The async HTTP services on httpx, against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import threading
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response as WResponse

from service_flow import ConfigurationError, Flow, Resources
from service_flow.http import (
    BearerAuth,
    CheckFailed,
    Client,
    Request,
    ResponseError,
    RetryableHTTPError,
    TransportError,
)
from service_flow.http.aio import AsyncClient, AsyncPoll, AsyncRequest
from service_flow.http.conditions import JsonPath, Status
from service_flow.http.limits import ConcurrencyLimit, RateLimit
from service_flow.http.poll import Alarm, Poll, PollTimeout
from service_flow.testing import FakeClock

DONE = Status(200) & (JsonPath("$.status") == "SUCCESS")


def run(coroutine_function, *args):
    """Run in a fresh loop and close the client(s) in it, as an application would."""

    async def main():
        try:
            return await coroutine_function(*args)
        finally:
            for client in [a for a in args if isinstance(a, AsyncClient)]:
                await client.aclose()

    return asyncio.run(main())


@pytest.fixture
def api(httpserver):
    return AsyncClient(httpserver.url_for(""))


def job_handler(pending, final="SUCCESS"):
    hits = []

    def handle(_request):
        hits.append(1)
        state = "PENDING" if len(hits) <= pending else final
        return WResponse(json.dumps({"status": state, "n": len(hits)}), 200, content_type="application/json")

    handle.hits = hits
    return handle


# --- AsyncRequest ------------------------------------------------------------------------


def test_an_async_request_builds_sends_checks_and_captures(httpserver, api):
    httpserver.expect_request("/users/7", query_string="full=1", headers={"X-Trace": "t1"}).respond_with_json(
        {"data": {"id": 7, "name": "Ada"}}
    )
    get_user = (
        api.get("/users/{user_id}", params={"full": 1}, headers={"X-Trace": lambda ctx: ctx["trace"]})
        .capture("user", "$.data")
        .check(status=200)
    )
    assert isinstance(get_user, AsyncRequest)
    flow = Flow(get_user)

    async def go(client):
        return await flow({"user_id": 7, "trace": "t1"})

    result = run(go, api)
    assert result["user"] == {"id": 7, "name": "Ada"}


def test_bodies_json_form_and_raw(httpserver, api):
    seen = []

    def echo(request):
        seen.append((request.headers.get("Content-Type", ""), request.get_data(as_text=True)))
        return WResponse("{}", 201, content_type="application/json")

    httpserver.expect_request("/items", method="POST").respond_with_handler(echo)

    async def go(client):
        await client.post("/items", json={"a": 1})({})
        await client.post("/items", data={"b": "2"})({})
        await client.post("/items", data="raw text")({})

    run(go, api)
    assert json.loads(seen[0][1]) == {"a": 1}
    assert seen[1] == ("application/x-www-form-urlencoded", "b=2")
    assert seen[2][1] == "raw text"


def test_statuses_map_as_for_requests(httpserver, api):
    httpserver.expect_request("/busy").respond_with_data("later", status=503, headers={"Retry-After": "7"})
    httpserver.expect_request("/missing").respond_with_data("no", status=404)
    httpserver.expect_request("/ok").respond_with_json({"state": "x"})

    async def go(client):
        with pytest.raises(RetryableHTTPError) as busy:
            await client.get("/busy")({})
        with pytest.raises(ResponseError) as missing:
            await client.get("/missing")({})
        with pytest.raises(CheckFailed):
            await client.get("/ok").check(jsonpath={"$.state": "y"})({})
        return busy.value, missing.value

    busy, missing = run(go, api)
    assert busy.delay == 7.0
    assert missing.status == 404


def test_a_refused_connection_is_retryable_and_a_lost_post_is_not(httpserver):
    def slow(_request):
        time.sleep(0.5)
        return WResponse("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    refused = AsyncClient(f"http://127.0.0.1:{free_port()}")
    slow_api = AsyncClient(httpserver.url_for(""), timeout=(2, 0.1))

    async def go(a, b):
        with pytest.raises(RetryableHTTPError, match="ConnectError"):
            await a.get("/x")({})
        with pytest.raises(RetryableHTTPError, match="ReadTimeout"):
            await b.get("/slow")({})
        with pytest.raises(TransportError, match="not retried") as lost:
            await b.post("/slow", json={})({})
        assert not isinstance(lost.value, RetryableHTTPError)

    run(go, refused, slow_api)


def test_a_bearer_token_is_refreshed_after_a_401(httpserver):
    tokens = iter(["old", "new"])
    httpserver.expect_request("/me", headers={"Authorization": "Bearer new"}).respond_with_json({"me": 1})
    httpserver.expect_request("/me").respond_with_data("", status=401)
    api = AsyncClient(httpserver.url_for(""), auth=BearerAuth(lambda: next(tokens)))

    async def go(client):
        return await client.get("/me").capture("me", "$.me")({})

    assert run(go, api) == {"me": 1}


def test_an_async_request_needs_an_async_client():
    with pytest.raises(ConfigurationError, match="must be an AsyncClient"):
        AsyncRequest("GET", "/x", client=Client())
    with pytest.raises(ConfigurationError, match="connection retries"):
        AsyncClient(retries=-1)


def test_async_requests_pickle_as_async_requests(api):
    request = api.get("/users/{user_id}").capture("user", "$.data")
    copy = pickle.loads(pickle.dumps(request))
    assert isinstance(copy, AsyncRequest)
    assert isinstance(copy.client, AsyncClient)
    assert copy.provides == ("user",)
    assert Resources.of(Flow(request)).items == (api,)


def test_teardown_inside_the_loop_closes_and_the_next_request_reconnects(httpserver, api):
    httpserver.expect_request("/ok").respond_with_json({})

    async def go(client):
        await client.get("/ok")({})
        client.teardown()  # a driver's restart, from inside the running loop
        await asyncio.sleep(0)
        await client.get("/ok")({})

    run(go, api)


# --- limits under asyncio ----------------------------------------------------------------


def test_a_concurrency_limit_holds_for_async_requests():
    limit = ConcurrencyLimit(2)
    seen = []

    def handler(_request):
        seen.append(limit.in_flight)
        time.sleep(0.02)
        return WResponse("{}", content_type="application/json")

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/x").respond_with_handler(handler)
    server.start()
    try:
        api = AsyncClient(server.url_for(""), limits=[limit])

        async def go(client):
            await asyncio.gather(*(client.get("/x")({}) for _ in range(6)))

        run(go, api)
    finally:
        server.stop()
    assert len(seen) == 6
    assert max(seen) == 2
    assert limit.in_flight == 0


def test_a_rate_limit_waits_on_the_clock_in_async_requests(httpserver):
    clock = FakeClock()
    httpserver.expect_request("/x").respond_with_json({})
    api = AsyncClient(httpserver.url_for(""), limits=[RateLimit(2, per=5, clock=clock)])

    async def go(client):
        for _ in range(4):
            await client.get("/x")({})

    run(go, api)
    assert clock.sleeps == [5.0]


# --- AsyncPoll ---------------------------------------------------------------------------


def test_async_poll_until_success(httpserver, api):
    handler = job_handler(pending=2)
    httpserver.expect_request("/jobs/7").respond_with_handler(handler)
    clock = FakeClock()
    poll = AsyncPoll(api.get("/jobs/{job_id}").capture("n", "$.n"), until=DONE, timeout=30, interval=0.5, clock=clock)

    async def go(client):
        return await Flow(poll)({"job_id": 7})

    assert run(go, api)["n"] == 3
    assert clock.sleeps == [0.5, 0.5]


def test_async_poll_alarm_and_timeout(httpserver, api):
    httpserver.expect_request("/failed").respond_with_handler(job_handler(pending=1, final="FAILED"))
    httpserver.expect_request("/pending").respond_with_handler(job_handler(pending=1000))
    clock = FakeClock()

    async def go(client):
        failed = AsyncPoll(
            client.get("/failed"),
            until=DONE,
            alarm=JsonPath("$.status") == "FAILED",
            ignore=[Exception],
            timeout=30,
            clock=clock,
        )
        with pytest.raises(Alarm) as alarm:
            await failed({})
        pending = AsyncPoll(client.get("/pending"), until=DONE, timeout=2.5, clock=clock)
        with pytest.raises(PollTimeout) as timeout:
            await pending({})
        return alarm.value, timeout.value

    alarm, timeout = run(go, api)
    assert alarm.attempts == 2
    assert timeout.attempts == 3


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_async_poll_ignores_refused_connections_until_the_server_comes_up():
    port = free_port()
    server = HTTPServer(host="127.0.0.1", port=port)
    server.expect_request("/jobs/7").respond_with_json({"status": "SUCCESS"})

    class ServerComesUp(FakeClock):
        def sleep(self, seconds):
            super().sleep(seconds)
            if len(self.sleeps) == 2:
                server.start()

    clock = ServerComesUp()
    api = AsyncClient(f"http://127.0.0.1:{port}")
    poll = AsyncPoll(
        api.get("/jobs/7").capture("job", "$"), until=DONE, ignore=RetryableHTTPError, timeout=9, clock=clock
    )

    async def go(client):
        return await poll({})

    try:
        assert run(go, api) == {"job": {"status": "SUCCESS"}}
        assert clock.sleeps == [1.0, 1.0]
    finally:
        if server.is_running():
            server.stop()


def test_async_poll_waits_without_blocking_the_loop(httpserver, api):
    httpserver.expect_request("/jobs/7").respond_with_handler(job_handler(pending=2))
    ticks = []

    async def ticker(stop):
        while not stop.is_set():
            ticks.append(1)
            await asyncio.sleep(0.01)

    async def go(client):
        stop = asyncio.Event()
        tick_task = asyncio.ensure_future(ticker(stop))
        await AsyncPoll(client.get("/jobs/7"), until=DONE, timeout=10, interval=0.1)({})
        stop.set()
        await tick_task

    run(go, api)
    assert len(ticks) >= 5  # 0.2 s of waiting, ticks every 0.01 s: the loop kept running


def test_sync_and_async_polls_refuse_each_others_requests(api):
    with pytest.raises(ConfigurationError, match="use AsyncPoll"):
        Poll(api.get("/x"), until=DONE, timeout=1)
    with pytest.raises(ConfigurationError, match="use Poll"):
        AsyncPoll(Request.get("http://127.0.0.1:1/x"), until=DONE, timeout=1)


def test_an_async_client_shared_by_threads_each_with_its_loop(httpserver):
    httpserver.expect_request("/x").respond_with_json({"ok": True})
    api = AsyncClient(httpserver.url_for(""))
    results = []

    def in_thread():
        async def go():
            try:
                results.append(await api.get("/x").capture("ok", "$.ok")({}))
            finally:
                await api.aclose()

        asyncio.run(go())

    for _ in range(2):  # one after the other: each loop gets its own httpx client
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join(timeout=10)
    assert results == [{"ok": True}, {"ok": True}]
