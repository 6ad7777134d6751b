"""The request service against a real HTTP server on 127.0.0.1: building, captures, checks."""

from __future__ import annotations

import json
import pickle
import re
from typing import TYPE_CHECKING

import pytest
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from service_flow import Flow, MissingContextKey, Resources
from service_flow.exceptions import ConfigurationError
from service_flow.http import (
    DEFAULT_TIMEOUT,
    Capture,
    CaptureFailed,
    CheckFailed,
    Client,
    Request,
)
from service_flow.http.conditions import JsonPath, Status

if TYPE_CHECKING:
    from pytest_httpserver import HTTPServer


@pytest.fixture
def api(httpserver: HTTPServer) -> Client:
    client = Client(httpserver.url_for(""))
    yield client
    client.teardown()


def echo(request: WRequest) -> WResponse:
    """Answer with what was received."""
    body = {
        "method": request.method,
        "path": request.path,
        "raw_uri": request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI"),
        "query": request.query_string.decode(),
        "args": {k: request.args.getlist(k) for k in request.args},
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "json": request.get_json(silent=True),
        "form": dict(request.form.items()),
    }
    return WResponse(json.dumps(body), content_type="application/json")


def test_a_two_step_flow_captures_then_posts_the_captured_value(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/users/7").respond_with_json({"data": {"id": 7, "name": "Ada"}})
    httpserver.expect_request("/audit", method="POST", json={"user": 7}).respond_with_json({"ok": True}, status=201)
    flow = api.get("/users/{user_id}").capture("user", "$.data").check(status=200) >> api.post(
        "/audit", json=lambda ctx: {"user": ctx["user"]["id"]}
    ).check(status=201).capture("audited", "$.ok")

    result = flow({"user_id": 7})

    assert result == {"user_id": 7, "user": {"id": 7, "name": "Ada"}, "audited": True}


def test_placeholders_are_filled_from_the_context_and_quoted(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request(re.compile("^/files/")).respond_with_handler(echo)
    step = api.get("/files/{name}").capture("uri", "$.raw_uri")
    assert step({"name": "a b/c?"}) == {"uri": "/files/a%20b%2Fc%3F"}


def test_a_missing_placeholder_key_names_the_key_and_the_service(api: Client) -> None:
    step = api.get("/users/{user_id}")
    with pytest.raises(MissingContextKey) as caught:
        step({"other": 1})
    assert caught.value.key == "user_id"
    assert caught.value.service == "GET /users/{user_id}"
    assert "user_id" in str(caught.value)
    assert step.requires == ("user_id",)


def test_params_add_to_the_query_string_already_in_the_url(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/search").respond_with_handler(echo)
    static = api.get("/search?sort=asc", params={"q": "x y", "tag": ["a", "b"]}).capture("args", "$.args")
    dynamic = api.get("/search?sort=asc", params=lambda ctx: {"page": ctx["page"]}).capture("args", "$.args")
    per_value = api.get("/search?sort=asc", params={"page": lambda ctx: ctx["page"], "n": 5}).capture("args", "$.args")

    assert static({})["args"] == {"sort": ["asc"], "q": ["x y"], "tag": ["a", "b"]}
    assert dynamic({"page": 3})["args"] == {"sort": ["asc"], "page": ["3"]}
    assert per_value({"page": 4})["args"] == {"sort": ["asc"], "page": ["4"], "n": ["5"]}


def test_headers_merge_client_defaults_static_and_computed_values(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/h").respond_with_handler(echo)
    client = Client(httpserver.url_for(""), headers={"X-App": "flow", "X-Env": "test"})
    step = client.get("/h", headers={"X-Env": "prod", "X-Request-Id": lambda ctx: ctx["rid"]}).capture(
        "headers", "$.headers"
    )
    headers = step({"rid": 42})["headers"]
    assert (headers["x-app"], headers["x-env"], headers["x-request-id"]) == ("flow", "prod", "42")
    whole = client.get("/h", headers=lambda ctx: {"X-Id": ctx["rid"]}).capture("headers", "$.headers")
    assert whole({"rid": 9})["headers"]["x-id"] == "9"


def test_json_and_form_bodies_as_values_or_functions(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/b", method="POST").respond_with_handler(echo)
    as_value = api.post("/b", json={"a": 1}).capture("got", "$.json")
    as_function = api.post("/b").with_json(lambda ctx: {"n": ctx["n"]}).capture("got", "$.json")
    form = api.post("/b", data={"name": lambda ctx: ctx["n"], "kind": "x"}).capture("got", "$.form")
    assert as_value({}) == {"got": {"a": 1}}
    assert as_function({"n": 2}) == {"got": {"n": 2}}
    assert form({"n": "z"}) == {"got": {"name": "z", "kind": "x"}}
    with pytest.raises(ConfigurationError, match="not both"):
        api.post("/b", json={}, data={"a": 1})


def test_captures_by_path_header_and_function(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/items").respond_with_json(
        {"items": [{"id": 1, "state": "done"}, {"id": 2, "state": "new"}], "count": 0},
        headers={"ETag": '"v1"'},
    )
    step = (
        api.get("/items")
        .capture("ids", "$.items[*].id", all=True)
        .capture("first", "$.items[0].id")
        .capture("done", '$.items[?(@.state == "done")].id')
        .capture("count", "$.count")
        .capture("etag", header="etag")
        .capture("status", lambda response: response.status_code)
        .capture("missing", "$.nope", default=None)
    )
    assert step({}) == {
        "ids": [1, 2],
        "first": 1,
        "done": 1,
        "count": 0,
        "etag": '"v1"',
        "status": 200,
        "missing": None,
    }
    assert step.provides == ("ids", "first", "done", "count", "etag", "status", "missing")


def test_a_capture_that_finds_nothing_fails_naming_the_key(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"data": None})
    with pytest.raises(CaptureFailed) as caught:
        api.get("/x").capture("user", "$.data.user")({})
    assert caught.value.key == "user"
    assert "'user'" in str(caught.value)
    assert caught.value.status == 200
    httpserver.expect_request("/html").respond_with_data("<html>", content_type="text/html")
    with pytest.raises(CaptureFailed, match="not JSON"):
        api.get("/html").capture("user", "$.data")({})


def test_a_null_json_value_is_captured_not_missing(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"data": None})
    assert api.get("/x").capture("data", "$.data")({}) == {"data": None}


def test_a_failed_check_says_which_with_status_and_body_excerpt(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"state": "pending", "detail": "x" * 500})
    step = api.get("/x").check(status=200).check(jsonpath={"$.state": "done"})
    with pytest.raises(CheckFailed) as caught:
        step({})
    error = caught.value
    assert error.check == "JsonPath('$.state').selects('done')"
    assert "'$.state' selected a string, not the expected value" in str(error)
    assert error.status == 200
    message = str(error)
    assert "GET http://" in message
    assert "-> 200" in message
    assert '"state": "pending"' in message
    assert len(message) < 500  # an excerpt, not the whole body


@pytest.mark.parametrize(
    ("check", "body", "holds"),
    [
        ({"json": {}}, {"a": 1}, False),
        ({"json": {}}, {}, True),
        ({"json": []}, [1], False),
        ({"status": 0}, {}, False),
        ({"jsonpath": {"$.n": 0}}, {"n": False}, False),
        ({"jsonpath": {"$.n": 0}}, {"n": 0}, True),
        ({"jsonpath": {"$.n": False}}, {"n": 0}, False),
        ({"jsonpath": {"$.n": None}}, {}, False),
        ({"jsonpath": {"$.n": None}}, {"n": None}, True),
        ({"jsonpath": {"$.n": ""}}, {"n": "x"}, False),
        ({"headers": {"X-Empty": ""}}, {}, False),
    ],
)
def test_falsy_expected_values_must_match_and_never_match_everything(
    httpserver: HTTPServer, api: Client, check: dict[str, object], body: object, holds: bool
) -> None:
    httpserver.expect_request("/x").respond_with_json(body)
    step = Request("GET", "/x", client=api, check=check)
    if holds:
        assert step({}) == {}
    else:
        with pytest.raises(CheckFailed):
            step({})


def test_checks_take_functions_and_the_polling_conditions(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"state": "done"})

    def is_done(response: object) -> bool:
        return response.json()["state"] == "done"  # type: ignore[attr-defined]

    assert api.get("/x").check(is_done, Status(200) & (JsonPath("$.state") == "done"))({}) == {}
    assert api.get("/x", check={"status_code": 200, "json": {"state": "done"}})({}) == {}
    with pytest.raises(CheckFailed, match="JsonPath") as caught:
        api.get("/x").check(JsonPath("$.state") == "new")({})
    assert "JsonPath" in caught.value.check

    def never(response: object) -> bool:
        return False

    with pytest.raises(CheckFailed, match=r"check Callback\(never\) failed: it returned a false value"):
        api.get("/x").check(is_done).check(never)({})


def test_the_fluent_spelling_and_the_constructor_agree(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/users/3").respond_with_json({"data": {"id": 3}})
    fluent = Request.get("/users/{user_id}", client=api).capture("user", "$.data").check(status=200)
    plain = Request("GET", "/users/{user_id}", client=api, capture={"user": "$.data"}, check={"status": 200})
    assert fluent({"user_id": 3}) == plain({"user_id": 3}) == {"user": {"id": 3}}
    assert fluent.provides == plain.provides == ("user",)


def test_fluent_methods_return_new_requests_and_keep_the_client(api: Client) -> None:
    base = api.get("/x")
    captured = base.capture("a", "$.a")
    checked = captured.check(status=200)
    assert base.provides == ()
    assert captured.provides == ("a",)
    assert captured is not base
    assert checked is not captured
    assert base.client is captured.client is checked.client is api


def test_a_flow_validates_with_the_captured_keys(api: Client) -> None:
    flow = api.get("/users/{user_id}").capture("user", "$.data") >> (lambda user: {"name": user["name"]})
    flow.validate({"user_id"})  # "user" is known to be provided


def test_resources_of_a_flow_find_the_client_once(api: Client) -> None:
    other = Client("http://127.0.0.1:9")
    flow = Flow(api.get("/a")) >> api.post("/b") >> other.get("/c")
    assert Resources.of(flow).items == (api, other)


def test_every_request_has_timeouts_with_a_default(api: Client) -> None:
    assert api.get("/x").build({}).timeout == DEFAULT_TIMEOUT
    assert api.get("/x", timeout=2).build({}).timeout == 2.0
    assert Client(timeout=(1, 5)).get("http://h/x").build({}).timeout == (1.0, 5.0)
    for bad in (None, 0, -1, (1, 2, 3), "3"):
        if bad is None:
            continue
        with pytest.raises(ConfigurationError, match="timeout"):
            api.get("/x", timeout=bad)
    with pytest.raises(ConfigurationError, match="timeout"):
        Client(timeout=0)


def test_a_base_url_on_the_request_wins_and_absolute_urls_are_kept(api: Client) -> None:
    assert api.get("/x").build({}).url == api.base_url + "/x"
    assert api.get("x", base_url="http://other:1/v2/").build({}).url == "http://other:1/v2/x"
    assert api.get("http://abs:2/y").build({}).url == "http://abs:2/y"


def test_bad_options_are_configuration_errors_naming_the_option(api: Client) -> None:
    with pytest.raises(ConfigurationError, match="JSON path"):
        api.get("/x").capture("a", "data.a")
    with pytest.raises(ConfigurationError, match="malformed"):
        api.get("/x").capture("a", "$.a[")
    with pytest.raises(ConfigurationError, match="statuz"):
        api.get("/x", check={"statuz": 200})
    with pytest.raises(ConfigurationError, match="placeholders"):
        api.get("/users/{user.id}")
    with pytest.raises(ConfigurationError, match="on_status"):
        api.get("/x", on_status={404: "maybe"})
    with pytest.raises(ConfigurationError, match="exactly one"):
        api.get("/x").capture("a")
    with pytest.raises(ConfigurationError, match="status"):
        api.get("/x").check(status="200")


def test_requests_and_clients_pickle_without_their_session(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/users/5").respond_with_json({"data": {"id": 5}})
    step = api.get("/users/{user_id}").capture("user", "$.data").check(status=200)
    assert step({"user_id": 5}) == {"user": {"id": 5}}  # the session is open now
    copy = pickle.loads(pickle.dumps(step))
    assert copy.client is not api
    assert copy.client._session is None
    assert copy({"user_id": 5}) == {"user": {"id": 5}}
    copy.client.teardown()


def test_capture_objects_in_the_constructor(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"a": [1, 2]}, headers={"X-Total": "2"})
    step = api.get(
        "/x",
        capture={
            "a": Capture.json("$.a[*]", all=True),
            "total": Capture.header("X-Total"),
            "n": Capture.using(lambda r: len(r.json()["a"])),
        },
    )
    assert step({}) == {"a": [1, 2], "total": "2", "n": 2}


# --- checks are conditions -------------------------------------------------------------


def test_check_takes_every_form_a_poll_condition_takes(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"state": "done", "n": 3}, headers={"X-State": "done"})
    passing = [
        Status(200) & (JsonPath("$.state") == "done"),
        lambda response: response.status_code == 200,
        {"status_code": 200, "jsonpath": [{"expression": "$.state", "value": "done"}]},
        {"status": 200, "jsonpath": {"$.n": 3}, "headers": {"X-State": "done"}},
        [Status(500), JsonPath("$.n") > 2],  # a list: any of them, as in Poll
        {"json": {"state": "done", "n": 3}},
        {"callback": lambda response: "done" in response.text},
    ]
    for condition in passing:
        assert api.get("/x").check(condition)({}) == {}, condition
        assert Request("GET", "/x", client=api, check=condition)({}) == {}, condition
    for condition in ([Status(500), Status(404)], {"status": 201}, ~Status(200), {"headers": {"X-State": "no"}}):
        with pytest.raises(CheckFailed):
            api.get("/x").check(condition)({})


def test_check_keywords_are_the_dict_forms_keys(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json(
        {"jobs": [{"s": "done"}, {"s": "done"}]}, headers={"X-State": "done"}
    )
    assert api.get("/x").check(status=200, headers={"X-State": "done"})({}) == {}
    assert api.get("/x").check(status=[200, 204], json={"jobs": [{"s": "done"}, {"s": "done"}]})({}) == {}
    httpserver.expect_request("/t").respond_with_data("ready")
    assert api.get("/t").check(text="ready")({}) == {}
    with pytest.raises(CheckFailed, match="the body differs"):
        api.get("/t").check(text="read")({})
    # httsleep's rule for the dict form: several matches compare as their list...
    assert api.get("/x").check(jsonpath={"$.jobs[*].s": ["done", "done"]})({}) == {}
    with pytest.raises(CheckFailed, match=r"selected 2 values, not the expected value"):
        api.get("/x").check(jsonpath={"$.jobs[*].s": "done"})({})
    # ...where a comparison needs every match to pass.
    assert api.get("/x").check(JsonPath("$.jobs[*].s") == "done")({}) == {}


def test_a_failed_part_is_named_and_a_custom_message_is_said(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"state": "running"})
    step = api.get("/x").check(Status(200) & (JsonPath("$.state") == "done"), message="the job is not finished")
    with pytest.raises(CheckFailed) as caught:
        step({})
    assert caught.value.check == "JsonPath('$.state') == 'done'"  # the part that failed
    assert "the job is not finished (check JsonPath('$.state') == 'done' failed: " in str(caught.value)
    assert "'$.state' selected a string that does not pass" in str(caught.value)
    with pytest.raises(CheckFailed, match="got 200"):
        api.get("/x").check(status=201)({})
    with pytest.raises(CheckFailed, match="matched nothing"):
        api.get("/x").check(JsonPath("$.missing").exists())({})


def test_sensitive_header_expectations_are_masked_in_check_failures(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({}, headers={"X-Api-Key": "other"})
    with pytest.raises(CheckFailed) as caught:
        api.get("/x").check(headers={"X-Api-Key": "k-s3cret"})({})
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in caught.value.check
    assert caught.value.check == "Header('X-Api-Key', ***)"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda step: step.check(), "needs a condition"),
        (lambda step: step.check(Status(200), message=""), "message"),
        (lambda step: step.check(Status(200), message=3), "message"),
        (lambda step: step.check({"status": 200, "status_code": 200}), "not both"),
        (lambda step: step.check(42), "not a condition"),
        (lambda step: step.check(jsonpath={"$.x[": 1}), "malformed"),
    ],
)
def test_bad_checks_are_refused_naming_the_request(api: Client, call: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        call(api.get("/x"))  # type: ignore[operator]
    assert "Request 'GET /x'" in str(caught.value)


def test_checks_with_messages_pickle(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"state": "running"})
    step = pickle.loads(pickle.dumps(api.get("/x").check(JsonPath("$.state") == "done", message="not yet")))
    with pytest.raises(CheckFailed, match="not yet"):
        step({})
    step.client.teardown()


# --- precompiled paths, hostile bodies -------------------------------------------------


def test_precompiled_jsonpath_ng_expressions_in_captures_and_checks(httpserver: HTTPServer, api: Client) -> None:
    from jsonpath_ng.ext import parse

    httpserver.expect_request("/x").respond_with_json({"items": [{"id": 1, "ok": True}, {"id": 2, "ok": False}]})
    ids, good = parse("$.items[*].id"), parse("$.items[?(@.ok == true)].id")
    step = (
        api.get("/x")
        .capture("ids", ids, all=True)
        .capture("good", good)
        .capture("first", Capture.json(ids))
        .check(jsonpath={ids: [1, 2]})
        .check(JsonPath(good) == 1)
    )
    assert step({}) == {"ids": [1, 2], "good": 1, "first": 1}
    assert pickle.loads(pickle.dumps(step))({}) == {"ids": [1, 2], "good": 1, "first": 1}
    plain = Request(
        "GET", "/x", client=api, capture={"good": good}, check={"jsonpath": [{"expression": ids, "value": [1, 2]}]}
    )
    assert plain({}) == {"good": 1}
    with pytest.raises(ConfigurationError, match="JSON path"):
        Capture.json(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000],
    ids=["unclosed", "valid"],
)
def test_a_body_nested_too_deeply_is_not_json_for_captures_and_checks(
    httpserver: HTTPServer, api: Client, body: bytes
) -> None:
    httpserver.expect_request("/deep").respond_with_data(body, content_type="application/json")
    with pytest.raises(CaptureFailed, match=r"capture 'x' \(JSON path '\$\.a'\): the body is not JSON") as caught:
        api.get("/deep").capture("x", "$.a")({})
    assert caught.value.key == "x"
    assert len(str(caught.value)) < 600  # the excerpt is bounded
    assert api.get("/deep").capture("x", "$.a", default=None)({}) == {"x": None}
    with pytest.raises(CheckFailed, match="not JSON"):
        api.get("/deep").check(json=[])({})
    with pytest.raises(CheckFailed, match="not JSON"):
        api.get("/deep").check(JsonPath("$..a").exists())({})
    assert api.get("/deep").check(status=200)({}) == {}


def test_a_deep_body_that_parses_is_captured_from(httpserver: HTTPServer, api: Client) -> None:
    from jsonpath_ng.ext import parse

    document: object = "leaf"
    for _ in range(600):
        document = {"a": document}
    httpserver.expect_request("/deep").respond_with_json(document)
    assert api.get("/deep").capture("leaf", "$" + ".a" * 600)({}) == {"leaf": "leaf"}
    step = api.get("/deep").capture("all", "$..a", all=True)
    try:  # newer jsonpath-ng walks descendants with a loop; older ones recurse
        parse("$..a").find(document)
    except RecursionError:
        with pytest.raises(CaptureFailed, match=r"'\$\.\.a'.*RecursionError"):
            step({})
    else:
        assert len(step({})["all"]) == 600


def test_a_path_that_cannot_be_evaluated_on_the_body_names_the_path(httpserver: HTTPServer, api: Client) -> None:
    httpserver.expect_request("/x").respond_with_json({"items": [{"n": 2, "id": 1}, {"n": "x", "id": 2}]})
    for step in (
        api.get("/x").capture("first", "$.items[/n].id"),
        api.get("/x").capture("first", "$.items[/n].id", default=None),  # not "found nothing": it failed
    ):
        with pytest.raises(CaptureFailed) as caught:
            step({})
        assert "'$.items[/n].id'" in str(caught.value)
        assert "TypeError" in str(caught.value)
        assert caught.value.key == "first"
    with pytest.raises(CheckFailed) as failed:
        api.get("/x").check(JsonPath("$.items[/n]").exists())({})
    assert "'$.items[/n]' could not be evaluated on the body" in str(failed.value)
