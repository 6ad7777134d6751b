"""Polling against real HTTP servers on 127.0.0.1; time is a FakeClock."""

from __future__ import annotations

import json
import pickle
import re
import socket
from types import SimpleNamespace

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Response as WResponse

from service_flow import ConfigurationError, ErrorKind, Flow, Resources, classify
from service_flow.http import BearerAuth, CheckFailed, Client, Request, RetryableHTTPError, conditions
from service_flow.http.conditions import JsonPath, Status
from service_flow.http.limits import ConcurrencyLimit, RateLimit
from service_flow.http.poll import Alarm, Poll, PollTimeout
from service_flow.testing import FakeClock


class Job:
    """A job resource that answers PENDING a few times, then a final state."""

    def __init__(self, pending=2, final="SUCCESS", status=200, headers=None):
        self.pending = pending
        self.final = final
        self.status = status
        self.headers = headers or {}
        self.hits = 0

    def __call__(self, request):
        self.hits += 1
        if self.hits <= self.pending:
            return WResponse(json.dumps({"status": "PENDING"}), 202, self.headers, content_type="application/json")
        body = {"status": self.final, "id": request.path.rsplit("/", 1)[-1], "result": 42}
        return WResponse(json.dumps(body), self.status, content_type="application/json")


@pytest.fixture
def api(httpserver):
    client = Client(httpserver.url_for(""))
    yield client
    client.teardown()


def serve(httpserver, job, path="/jobs/7"):
    httpserver.expect_request(path).respond_with_handler(job)
    return job


DONE = Status(200) & (JsonPath("$.status") == "SUCCESS")


def test_polls_until_success_and_captures_from_the_final_response(httpserver, api):
    job = serve(httpserver, Job(pending=2))
    clock = FakeClock()
    poll = Poll(api.get("/jobs/{job_id}").capture("result", "$.result"), until=DONE, timeout=30, clock=clock)
    assert poll({"job_id": 7}) == {"result": 42}
    assert job.hits == 3
    assert clock.sleeps == [1.0, 1.0]


def test_a_poll_in_a_flow_reads_and_extends_the_context(httpserver, api):
    httpserver.expect_request("/jobs", method="POST").respond_with_json({"id": 7}, status=201)
    serve(httpserver, Job(pending=1))
    flow = api.post("/jobs", json={"kind": "report"}).capture("job_id", "$.id") >> Poll(
        api.get("/jobs/{job_id}").capture("job", "$"), until=DONE, max_attempts=5, clock=FakeClock()
    )
    result = flow({})
    assert result["job_id"] == 7
    assert result["job"] == {"status": "SUCCESS", "id": "7", "result": 42}


def test_alarm_is_raised_with_the_condition_and_the_response(httpserver, api):
    serve(httpserver, Job(pending=1, final="FAILED"))
    failed = JsonPath("$.status") == "FAILED"
    poll = Poll(api.get("/jobs/7"), until=DONE, alarm=[Status(500), failed], timeout=30, clock=FakeClock())
    with pytest.raises(Alarm) as caught:
        poll({})
    error = caught.value
    assert error.attempts == 2
    assert error.condition == repr(failed)  # the alarm that held, not the whole list
    assert error.response.status_code == 200
    assert "FAILED" in error.response.excerpt
    assert "alarm" in str(error)
    assert "FAILED" in str(error)


def test_an_alarm_wins_over_success_and_is_never_ignored(httpserver, api):
    serve(httpserver, Job(pending=0, final="SUCCESS"))
    poll = Poll(
        api.get("/jobs/7"),
        until=DONE,
        alarm={"jsonpath": [{"expression": "$.result", "value": 42}]},
        ignore=[Exception],
        max_attempts=3,
        clock=FakeClock(),
    )
    with pytest.raises(Alarm):
        poll({})


def test_timeout_gives_up_with_our_error_without_sleeping_past_the_deadline(httpserver, api):
    job = serve(httpserver, Job(pending=1000))
    clock = FakeClock()
    poll = Poll(api.get("/jobs/7"), until=DONE, timeout=3.5, clock=clock)
    with pytest.raises(PollTimeout) as caught:
        poll({})
    error = caught.value
    assert job.hits == 4  # at t = 0, 1, 2, 3; a poll at 4 would be past 3.5
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert error.attempts == 4
    assert error.elapsed == 3.0
    assert error.response.status_code == 202
    assert "within 3.5 s" in str(error)
    assert "JsonPath('$.status') == 'SUCCESS'" in str(error)
    assert classify(error) is ErrorKind.FAIL  # not a Retry: polling again from scratch is the user's call


def test_max_attempts_counts_every_poll(httpserver, api):
    job = serve(httpserver, Job(pending=1000))
    clock = FakeClock()
    poll = Poll(api.get("/jobs/7"), until=DONE, max_attempts=3, interval=0.5, clock=clock)
    with pytest.raises(PollTimeout, match="after 3 polls") as caught:
        poll({})
    assert job.hits == 3
    assert caught.value.attempts == 3
    assert clock.sleeps == [0.5, 0.5]  # a fractional interval is honoured


def test_backoff_with_a_cap(httpserver, api):
    serve(httpserver, Job(pending=1000))
    clock = FakeClock()
    poll = Poll(api.get("/jobs/7"), until=DONE, max_attempts=6, interval=0.5, backoff=2, max_interval=2, clock=clock)
    with pytest.raises(PollTimeout):
        poll({})
    assert clock.sleeps == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_jitter_shortens_waits_within_bounds(httpserver, api):
    serve(httpserver, Job(pending=1000))
    clock = FakeClock()
    poll = Poll(api.get("/jobs/7"), until=DONE, max_attempts=20, interval=1, jitter=0.5, clock=clock)
    with pytest.raises(PollTimeout):
        poll({})
    assert len(clock.sleeps) == 19
    assert all(0.5 <= s <= 1.0 for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


class CountingClock(FakeClock):
    """Records every call to sleep, zero-length ones too."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def sleep(self, seconds):
        self.calls.append(seconds)
        super().sleep(seconds)


def test_an_interval_of_zero_never_sleeps(httpserver, api):
    job = serve(httpserver, Job(pending=3))
    clock = CountingClock()
    assert Poll(api.get("/jobs/7"), until=DONE, max_attempts=10, interval=0, clock=clock)({}) == {}
    assert job.hits == 4
    assert clock.calls == []


def test_retry_after_lengthens_the_next_interval(httpserver, api):
    serve(httpserver, Job(pending=2, headers={"Retry-After": "3"}))
    clock = FakeClock()
    Poll(api.get("/jobs/7"), until=DONE, timeout=60, interval=1, clock=clock)({})
    assert clock.sleeps == [3.0, 3.0]


def test_statuses_alone_do_not_stop_polling(httpserver, api):
    answers = iter([(503, "down"), (404, "not yet"), (200, "ready")])
    httpserver.expect_request("/report").respond_with_handler(lambda _: WResponse(*reversed(next(answers))))
    poll = Poll(api.get("/report").capture("text", lambda r: r.text), until=Status(200), max_attempts=5, interval=0)
    assert poll({}) == {"text": "ready"}


def test_the_final_response_skips_the_status_map_but_not_the_checks(httpserver, api):
    httpserver.expect_request("/gone").respond_with_data("", status=404, headers={"X-Deleted": "yes"})
    gone = api.get("/gone").capture("deleted", header="X-Deleted")
    assert Poll(gone, until=Status(404), max_attempts=1)({}) == {"deleted": "yes"}
    with pytest.raises(CheckFailed):
        Poll(gone.check(status=200), until=Status(404), max_attempts=1)({})


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerComesUp(FakeClock):
    """A clock that starts a real server on ``port`` at the second sleep."""

    def __init__(self, port):
        super().__init__()
        self.server = HTTPServer(host="127.0.0.1", port=port)
        self.server.expect_request("/jobs/7").respond_with_json({"status": "SUCCESS"})

    def sleep(self, seconds):
        super().sleep(seconds)
        if len(self.sleeps) == 2 and not self.server.is_running():
            self.server.start()


@pytest.mark.parametrize("ignore", [RetryableHTTPError, requests.ConnectionError])
def test_ignored_connection_errors_until_the_server_comes_up(ignore):
    port = free_port()
    clock = ServerComesUp(port)
    try:
        with Client(f"http://127.0.0.1:{port}") as client:
            poll = Poll(client.get("/jobs/7").capture("job", "$"), until=DONE, ignore=ignore, timeout=30, clock=clock)
            assert poll({}) == {"job": {"status": "SUCCESS"}}
        assert clock.sleeps == [1.0, 1.0]  # refused twice, then served
    finally:
        if clock.server.is_running():
            clock.server.stop()


def test_a_connection_error_not_ignored_propagates_and_gives_up_with_the_last_error():
    port = free_port()
    with Client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(RetryableHTTPError):
            Poll(client.get("/jobs/7"), until=DONE, max_attempts=3, clock=FakeClock())({})
        with pytest.raises(PollTimeout) as caught:
            Poll(client.get("/jobs/7"), until=DONE, ignore=RetryableHTTPError, max_attempts=2, clock=FakeClock())({})
    assert caught.value.response is None
    assert "RetryableHTTPError" in caught.value.last_error
    assert "no response" in str(caught.value)


def test_an_ignored_error_in_a_condition_counts_as_not_yet(httpserver, api):
    serve(httpserver, Job(pending=1))
    poll = Poll(
        api.get("/jobs/7"), until=lambda r: r.json()["result"] == 42, ignore=[KeyError], max_attempts=3, interval=0
    )
    assert poll({}) == {}


class SpyClient(Client):
    """A real client that remembers its responses and counts closes and JSON parses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.responses = []

    def send(self, out, **kwargs):
        response = super().send(out, **kwargs)
        response.closes = 0
        close = response.close

        def counted_close():
            response.closes += 1
            close()

        response.close = counted_close
        self.responses.append(response)
        return response


def test_every_response_is_closed_and_parsed_once(httpserver, monkeypatch):
    parsed = []  # the bodies conditions and captures parsed, one entry per parse
    loads = conditions.json.loads
    monkeypatch.setattr(conditions, "json", SimpleNamespace(loads=lambda body: parsed.append(body) or loads(body)))
    serve(httpserver, Job(pending=3))
    with SpyClient(httpserver.url_for("")) as client:
        poll = Poll(
            client.get("/jobs/7").capture("status", "$.status"),
            until=DONE,
            alarm=(JsonPath("$.status") == "FAILED") | JsonPath("$.error").exists(),
            max_attempts=5,
            interval=0,
        )
        assert poll({}) == {"status": "SUCCESS"}
    assert len(client.responses) == 4
    assert [r.closes >= 1 for r in client.responses] == [True] * 4
    # Alarm and success conditions share one parse; the final capture parses once more.
    assert [sum(body is r.content for body in parsed) for r in client.responses] == [1, 1, 1, 2]


def test_limits_apply_to_each_poll_and_a_poll_runs_twice(httpserver):
    clock = FakeClock()
    rate = RateLimit(2, per=10, clock=clock)
    in_flight = ConcurrencyLimit(1)
    with Client(httpserver.url_for(""), limits=[rate, in_flight]) as client:
        poll = Poll(client.get("/jobs/7"), until=DONE, max_attempts=5, interval=0, clock=clock)
        for _ in range(2):
            serve(httpserver, Job(pending=1))
            poll({})
            httpserver.clear()
    # Four requests, at most two per 10 s: the third waited for the window (the fourth
    # shares it); the poll itself never slept.
    assert clock.sleeps == [10.0]
    assert in_flight.in_flight == 0


def test_secrets_stay_out_of_the_errors(httpserver):
    serve(httpserver, Job(pending=1000), path="/jobs/7")
    with Client(httpserver.url_for(""), auth=BearerAuth("tok-s3cret")) as client:
        poll = Poll(client.get("/jobs/7", params={"api_key": "key-s3cret"}), until=DONE, max_attempts=2, interval=0)
        with pytest.raises(PollTimeout) as caught:
            poll({})
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in caught.value.url
    assert "s3cret" not in pickle.dumps(caught.value).decode("latin-1")


def test_errors_pickle(httpserver, api):
    serve(httpserver, Job(pending=0, final="FAILED"))
    with pytest.raises(Alarm) as caught:
        Poll(api.get("/jobs/7"), until=DONE, alarm=JsonPath("$.status") == "FAILED", max_attempts=2)({})
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is Alarm
    assert copy.condition == caught.value.condition
    assert copy.response == caught.value.response


def test_a_poll_pickles_and_lists_its_client_as_a_resource(api):
    poll = Poll(api.get("/jobs/{job_id}").capture("job", "$"), until=DONE, timeout=5)
    copy = pickle.loads(pickle.dumps(poll))
    assert repr(copy.until) == repr(DONE)
    assert copy.provides == ("job",)
    assert Resources.of(Flow(poll)).items == (api,)
    assert poll.name == "poll GET /jobs/{job_id}"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give max_attempts or timeout"),
        ({"max_attempts": 0}, "max_attempts must be"),
        ({"timeout": -1}, "timeout must be"),
        ({"timeout": 5, "interval": -1}, "interval must be"),
        ({"timeout": 5, "backoff": 0.5}, "backoff must be"),
        ({"timeout": 5, "jitter": 2}, "jitter must be"),
        ({"timeout": 5, "max_interval": -1}, "max_interval must be"),
        ({"timeout": 5, "ignore": [KeyboardInterrupt]}, "ignore takes exception classes"),
        ({"timeout": 5, "ignore": "KeyError"}, "ignore takes exception classes"),
        ({"timeout": 5, "alarm": {}}, "alarm: an empty condition dict"),
        ({"timeout": 5, "alarm": JsonPath("$.x")}, "not a condition"),
    ],
)
def test_bad_options_are_configuration_errors_naming_the_poll(api, options, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        Poll(api.get("/jobs/7"), until=DONE, **options)
    assert "Poll 'poll GET /jobs/7'" in str(caught.value)


def test_poll_takes_a_request():
    with pytest.raises(ConfigurationError, match="Poll polls a Request"):
        Poll(lambda: None, until=DONE, timeout=1)
    with pytest.raises(ConfigurationError, match="malformed JSONPath"):
        Poll(Request.get("http://127.0.0.1:1/x"), until=JsonPath("$.x[") == 1, timeout=1)


# --- the alarm that held, one language with checks ---------------------------------------


@pytest.mark.parametrize("combine", [list, lambda conditions: conditions[0] | conditions[1] | conditions[2]])
def test_alarm_condition_is_the_alarm_that_held(httpserver, api, combine):
    serve(httpserver, Job(pending=0, final="FAILED", status=200))
    failed = JsonPath("$.status") == "FAILED"
    alarms = combine([Status(500), failed, JsonPath("$.result") == 42])
    with pytest.raises(Alarm) as caught:
        Poll(api.get("/jobs/7"), until=DONE, alarm=alarms, max_attempts=2, clock=FakeClock())({})
    assert caught.value.condition == repr(failed)  # the first that held, not the list
    assert f"alarm {failed!r} held on poll 1" in str(caught.value)


def test_a_single_alarm_condition_is_reported_whole(httpserver, api):
    serve(httpserver, Job(pending=0, final="FAILED"))
    alarm = Status(200) & (JsonPath("$.status") == "FAILED")
    with pytest.raises(Alarm) as caught:
        Poll(api.get("/jobs/7"), until=DONE, alarm=alarm, max_attempts=2)({})
    assert caught.value.condition == repr(alarm)


def test_poll_takes_the_dict_form_checks_take(httpserver, api):
    serve(httpserver, Job(pending=1))
    until = {"status": 200, "jsonpath": {"$.status": "SUCCESS"}}
    poll = Poll(api.get("/jobs/7").capture("result", "$.result"), until=until, max_attempts=3, interval=0)
    assert poll({}) == {"result": 42}


HOSTILE = {
    "/deep": WResponse(b"[" * 100_000, content_type="application/json"),
    "/mixed": WResponse(json.dumps({"items": [{"n": 2}, {"n": "x"}]}), content_type="application/json"),
}


@pytest.mark.parametrize("path", sorted(HOSTILE))
def test_a_hostile_body_is_not_yet_for_a_poll(httpserver, api, path):
    httpserver.expect_request(path).respond_with_response(HOSTILE[path])
    until = JsonPath("$..n").exists() & JsonPath("$.items[/n]").exists()
    poll = Poll(api.get(path), until=until, alarm=JsonPath("$.items[/n]") == 1, max_attempts=2, interval=0)
    with pytest.raises(PollTimeout, match="no success after 2 polls"):
        poll({})


SAME_VERDICT_BODIES = [
    {"state": "done", "jobs": [{"s": "done"}, {"s": "done"}], "n": 3},
    {"state": "running", "jobs": [{"s": "done"}, {"s": "failed"}], "n": "3"},
    {"state": "done", "jobs": [{"s": "done"}], "n": None},
]
# Each condition with its verdict on each body above, the same in a check and in a poll.
SAME_VERDICT_CONDITIONS = [
    (Status(200), [True, True, True]),
    (Status(201, 202), [False, False, False]),
    (JsonPath("$.jobs[*].s") == "done", [True, False, True]),  # every match
    (JsonPath("$.n") > 2, [True, False, False]),  # "3" is not a number
    (JsonPath("$.missing").exists(), [False, False, False]),
    (~(JsonPath("$.state") == "running"), [True, False, True]),
    (
        {"status_code": 200, "jsonpath": [{"expression": "$.jobs[*].s", "value": ["done", "done"]}]},
        [True, False, False],
    ),
    ({"status": 200, "jsonpath": {"$.jobs[*].s": "done"}}, [False, False, True]),  # one match: its value
    ({"jsonpath": {"$.jobs[*].s": ["done"]}}, [False, False, False]),
    ({"headers": {"X-Kind": "job"}, "json": SAME_VERDICT_BODIES[2]}, [False, False, True]),
    ([Status(500), JsonPath("$.state") == "done"], [True, False, True]),  # a list: any
    (lambda response: response.json()["state"] == "done", [True, False, True]),
]


@pytest.mark.parametrize("body", range(len(SAME_VERDICT_BODIES)), ids=["done", "running", "one-job"])
@pytest.mark.parametrize(
    ("condition", "verdicts"),
    SAME_VERDICT_CONDITIONS,
    ids=[f"{i}-{type(c).__name__}" for i, (c, _) in enumerate(SAME_VERDICT_CONDITIONS)],
)
def test_a_condition_gives_the_same_verdict_in_check_and_in_poll(httpserver, api, condition, verdicts, body):
    httpserver.expect_request("/jobs/7").respond_with_json(SAME_VERDICT_BODIES[body], headers={"X-Kind": "job"})
    try:
        api.get("/jobs/7").check(condition)({})
        checked = True
    except CheckFailed:
        checked = False
    try:
        Poll(api.get("/jobs/7"), until=condition, max_attempts=1)({})
        polled = True
    except PollTimeout:
        polled = False
    assert checked is polled is verdicts[body]


# --- options checked at construction ---------------------------------------------------

BAD_NUMBERS = [float("nan"), float("inf"), float("-inf"), "1", True, -1, None, [1]]
NUMERIC_OPTIONS = ["interval", "backoff", "max_interval", "jitter", "timeout", "max_attempts"]
OPTIONAL = {"max_interval", "timeout", "max_attempts"}  # None: no cap, no deadline, no count


@pytest.mark.parametrize("poll_class", ["Poll", "AsyncPoll"])
@pytest.mark.parametrize(
    ("option", "value"),
    [(o, v) for o in NUMERIC_OPTIONS for v in BAD_NUMBERS if not (v is None and o in OPTIONAL)],
    ids=repr,
)
def test_every_numeric_option_refuses_what_is_not_a_usable_number(httpserver, poll_class, option, value):
    from service_flow.http.aio import AsyncClient, AsyncPoll

    client = Client(httpserver.url_for("")) if poll_class == "Poll" else AsyncClient(httpserver.url_for(""))
    kind = Poll if poll_class == "Poll" else AsyncPoll
    options = {"max_attempts": 3, "timeout": 5, option: value}
    with pytest.raises(ConfigurationError) as caught:
        kind(client.get("/jobs/7"), until=DONE, **options)
    assert f"{option} must be" in str(caught.value)
    assert "poll GET /jobs/7" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backoff": 0.99}, "backoff must be a finite number, at least 1"),
        ({"jitter": 1.01}, "jitter must be a finite number, between 0 and 1"),
        ({"timeout": 0}, "timeout must be a finite number, more than 0"),
        ({"max_attempts": 2.0}, "max_attempts must be a whole number"),
        ({"max_attempts": "3", "timeout": None}, "max_attempts must be a whole number"),
    ],
)
def test_numeric_bounds_are_named(api, options, message):
    with pytest.raises(ConfigurationError, match=message):
        Poll(api.get("/jobs/7"), until=DONE, **{"timeout": 5, **options})


def test_usable_numbers_of_any_real_type_are_taken(httpserver, api):
    from fractions import Fraction

    serve(httpserver, Job(pending=2))
    clock = FakeClock()
    poll = Poll(
        api.get("/jobs/7"),
        until=DONE,
        interval=Fraction(1, 2),
        backoff=2,
        max_interval=None,
        jitter=0,
        timeout=None,
        max_attempts=5,
        clock=clock,
    )
    assert poll({}) == {}
    assert clock.sleeps == [0.5, 1.0]


@pytest.mark.parametrize("path", sorted(HOSTILE))
def test_async_checks_captures_and_polls_on_hostile_bodies_name_the_path(httpserver, path):
    import asyncio

    from service_flow.http import CaptureFailed
    from service_flow.http.aio import AsyncClient, AsyncPoll

    httpserver.expect_request(path).respond_with_response(HOSTILE[path])
    expression = "$.a" if path == "/deep" else "$.items[/n]"

    async def main():
        client = AsyncClient(httpserver.url_for(""))
        try:
            with pytest.raises(CaptureFailed, match=re.escape(repr(expression))):
                await client.get(path).capture("x", expression)({})
            with pytest.raises(CheckFailed, match=re.escape(repr(expression))):
                await client.get(path).check(JsonPath(expression).exists())({})
            with pytest.raises(PollTimeout):
                await AsyncPoll(client.get(path), until=JsonPath(expression).exists(), max_attempts=2, interval=0)({})
        finally:
            await client.aclose()

    asyncio.run(main())
