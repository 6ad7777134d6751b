"""Placeholders, query parameters and headers are built from the context safely, or refused clearly."""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from service_flow import ConfigurationError, Flow, MissingContextKey
from service_flow.http import AsyncClient, Client, Request, RequestBuildError

if TYPE_CHECKING:
    from collections.abc import Iterator


def echo(request: WRequest) -> WResponse:
    """Answers with the path (its segments decoded one by one) and query it received, and the headers."""
    raw = request.environ.get("REQUEST_URI") or request.environ["RAW_URI"]
    path, _, query = raw.partition("?")
    body = {
        "path": path,
        "segments": [unquote(segment) for segment in path.split("/")],
        "query": query,
        "headers": dict(request.headers.items()),
    }
    return WResponse(json.dumps(body), content_type="application/json")


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request(re.compile(".*")).respond_with_handler(echo)
    return httpserver


@pytest.fixture
def other_host() -> Iterator[HTTPServer]:
    """A second server, on another loopback address (another origin)."""
    second = HTTPServer(host="127.0.0.2")
    second.expect_request(re.compile(".*")).respond_with_handler(echo)
    second.start()
    yield second
    second.clear()
    if second.is_running():
        second.stop()


def call(step: Any, context: dict[str, Any]) -> Any:
    """Run a sync or an async request service."""
    result = step(context)
    return asyncio.run(result) if asyncio.iscoroutine(result) else result


def run_both(client_url: str, url: str, context: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    """The same request sent with Client (requests) and AsyncClient (httpx): what each server saw."""
    sync = Client(client_url).get(url, **options).capture("seen", "$")(context)["seen"]

    async def go() -> dict[str, Any]:
        api = AsyncClient(client_url)
        try:
            return (await api.get(url, **options).capture("seen", "$")(context))["seen"]
        finally:
            await api.aclose()

    return [sync, asyncio.run(go())]


# -- placeholders stay in their segment ------------------------------------------------


@pytest.mark.parametrize("value", ["a/b", "?x=1", "#frag", "%2E%2E", "a b", "100%", "x/../y", "ü"])
def test_a_placeholder_value_stays_inside_its_path_segment(server: HTTPServer, value: str) -> None:
    for seen in run_both(server.url_for(""), "/users/{uid}/orders/{oid}/cancel", {"uid": 7, "oid": value}):
        segments = seen["segments"]
        assert segments[:4] == ["", "users", "7", "orders"]
        assert segments[4] == value  # the server decodes one segment: the value, whole
        assert segments[5:] == ["cancel"]
        assert seen["query"] == ""


@pytest.mark.parametrize("value", ["..", ".", "..."])
def test_a_dot_segment_is_refused_naming_the_key(server: HTTPServer, value: str) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        step = client.get("/users/{uid}/orders/{oid}/cancel")
        with pytest.raises(RequestBuildError, match="'oid'") as caught:
            call(step, {"uid": 7, "oid": value})
        assert caught.value.part == "placeholder 'oid'"
        assert "dots" in str(caught.value)
    assert server.log == []  # nothing was sent


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (None, "None"),
        (b"7", "bytes"),
        ({"id": 7}, "dict"),
        ([7], "list"),
        ((7,), "tuple"),
        ({7}, "set"),
        ("", "empty"),
        (True, "bool"),
        (math.nan, "finite"),
        (math.inf, "finite"),
    ],
)
def test_values_that_cannot_fill_a_placeholder_are_an_error_naming_the_key(
    server: HTTPServer, value: Any, said: str
) -> None:
    flow = Flow(Client(server.url_for("")).get("/users/{user_id}/profile"), name="profile")
    run = flow.run({"user_id": value})
    assert isinstance(run.error, RequestBuildError)
    assert "'user_id'" in str(run.error)
    assert said in str(run.error)
    assert "profile" in str(run.error)  # the flow is named
    assert server.log == []


def test_a_value_in_the_query_part_of_a_template_may_hold_dots(server: HTTPServer) -> None:
    for seen in run_both(server.url_for(""), "/search?q={q}", {"q": ".."}):
        assert seen["query"] == "q=.."


def test_a_missing_placeholder_key_is_a_missing_context_key(server: HTTPServer) -> None:
    with pytest.raises(MissingContextKey) as caught:
        Client(server.url_for("")).get("/users/{user_id}")({"uid": 7})
    assert caught.value.key == "user_id"


# -- params ---------------------------------------------------------------------------


def test_none_params_are_left_out_as_requests_does(server: HTTPServer) -> None:
    for seen in run_both(
        server.url_for(""),
        "/p",
        {"n": None},
        params={"a": None, "b": [1, None, 2], "c": "x", "d": lambda ctx: ctx["n"]},
    ):
        assert seen["query"] == "b=1&b=2&c=x"


def test_a_query_string_with_a_url_in_it_is_still_a_relative_url(server: HTTPServer) -> None:
    for seen in run_both(server.url_for(""), "/go?next=http://elsewhere.example/x", {}):
        assert seen["path"] == "/go"
        assert seen["query"] == "next=http://elsewhere.example/x"


# -- protocol-relative templates ---------------------------------------------------------


def test_a_protocol_relative_template_keeps_its_host(server: HTTPServer, other_host: HTTPServer) -> None:
    url = f"//127.0.0.2:{other_host.port}/elsewhere"
    for seen in run_both(server.url_for(""), url, {}):
        assert seen["path"] == "/elsewhere"
    assert len(other_host.log) == 2  # sync and async
    assert server.log == []


def test_a_protocol_relative_template_without_a_base_url_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no scheme"):
        Request.get("//127.0.0.1:9/p")


# -- functions of the context ------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "where"),
    [
        ({"headers": {"X-User": lambda ctx: ctx["user"]}}, "header 'X-User'"),
        ({"headers": lambda ctx: {"X-User": ctx["user"]}}, "its headers"),
        ({"params": {"page": lambda ctx: ctx["user"]}}, "param 'page'"),
        ({"params": lambda ctx: {"page": ctx["user"]}}, "its params"),
        ({"json": lambda ctx: {"u": ctx["user"]}}, "its JSON body"),
    ],
)
def test_a_function_reading_a_missing_key_raises_missing_context_key(
    server: HTTPServer, option: dict[str, Any], where: str
) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        with pytest.raises(MissingContextKey) as caught:
            call(client.post("/x", **option), {"usr": 1})
        assert caught.value.key == "user"
        assert where in str(caught.value)
    assert server.log == []


def test_a_function_that_fails_names_the_header_or_param(server: HTTPServer) -> None:
    client = Client(server.url_for(""))

    def boom(ctx: dict[str, Any]) -> str:
        return ctx["profile"]["id"]  # a KeyError, but not a missing context key

    cases = [({"headers": {"X-Sig": boom}}, "header 'X-Sig'"), ({"params": {"page": lambda _: 1 / 0}}, "param 'page'")]
    for option, where in cases:
        with pytest.raises(RequestBuildError) as caught:
            client.get("/x", **option)({"profile": {}})
        assert caught.value.part == where
        assert where in str(caught.value)
        assert isinstance(caught.value.__cause__, (KeyError, ZeroDivisionError))


def test_computed_headers_none_is_not_sent_and_numbers_are_text(server: HTTPServer) -> None:
    client = Client(server.url_for(""), headers={"X-Env": "test", "X-Drop": "d"})
    seen = client.get("/h", headers={"x-env": "prod", "X-Drop": None, "X-Page": lambda ctx: ctx["page"]}).capture(
        "seen", "$"
    )({"page": 3})["seen"]
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-env"] == "prod"  # one header, whatever the case it was given in
    assert "x-drop" not in headers
    assert headers["x-page"] == "3"


# -- headers that cannot be sent ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "said"),
    [("clé-secrète", "non-ASCII"), ("k\r\nX-Evil: 1", "line break"), ("k\x00", "control"), (" k", "leading")],
)
def test_an_unsendable_computed_header_names_the_header_never_the_value(
    server: HTTPServer, value: str, said: str
) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        with pytest.raises(RequestBuildError) as caught:
            call(client.get("/x", headers={"X-Api-Key": lambda _: value}), {})
        assert "'X-Api-Key'" in str(caught.value)
        assert said in str(caught.value)
        assert value.strip() not in str(caught.value)
        assert value.strip() not in repr(caught.value)
    assert server.log == []


def test_a_non_ascii_header_name_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="not a header name"):
        Request.get("http://127.0.0.1:9/x", headers={"X-Clé": "v"})


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": 5},
        {"base_url": "api.example.com"},
        {"base_url": "ftp://files.example.com"},
        {"headers": {"X-Count": 5}},
        {"headers": {"X-Api-Key": "é"}},
        {"headers": {"X-A": "a\nb"}},
        {"headers": ["X-A"]},
    ],
)
def test_bad_client_settings_are_configuration_errors(options: dict[str, Any]) -> None:
    for kind in (Client, AsyncClient):
        with pytest.raises(ConfigurationError):
            kind(**options)


@pytest.mark.parametrize("url", ["/users/{a!r}", "/users/{a:>10}", "/users/{a!s:>3}", "/users/{}", "/x/{a.b}"])
def test_conversions_and_format_specs_in_templates_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="placeholder"):
        Request.get(url, client=Client("http://127.0.0.1:9"))


@pytest.mark.parametrize("options", [{"base_url": 5}, {"headers": {"X-Count": 5}}, {"headers": {"X\n": "v"}}])
def test_bad_request_settings_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Request.get("/x", client=Client("http://127.0.0.1:9"), **options)


# -- found by acceptance testing: refused when given, not when sent -------------------------


@pytest.mark.parametrize(
    ("url", "said"),
    [("/users/7", "no base_url"), ("users/{uid}", "no base_url"), ("{url}", "no base_url"), ("ftp://h/x", "not http")],
)
def test_a_url_that_cannot_be_sent_is_refused_at_construction(url: str, said: str) -> None:
    from service_flow.http import AsyncRequest

    for kind in (Request, AsyncRequest):
        with pytest.raises(ConfigurationError, match=said):
            kind("GET", url)


@pytest.mark.parametrize("auth", [5, "a-token", {"Authorization": "Bearer x"}])
def test_an_auth_that_is_not_an_auth_is_refused_at_construction(auth: Any) -> None:
    for kind in (Client, AsyncClient):
        with pytest.raises(ConfigurationError, match="auth"):
            kind("http://127.0.0.1:9", auth=auth)
        with pytest.raises(ConfigurationError, match="auth"):
            kind("http://127.0.0.1:9").get("/x", auth=auth)


@pytest.mark.parametrize("body", [{"at": {1, 2}}, {"when": object()}, {"ratio": math.nan}, [math.inf]])
def test_a_json_body_that_cannot_be_encoded_is_refused_before_sending(server: HTTPServer, body: Any) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        with pytest.raises(ConfigurationError, match="JSON body"):
            client.post("/x", json=body)
        with pytest.raises(RequestBuildError, match="JSON body") as caught:
            call(client.post("/x", json=lambda _: body), {})
        assert caught.value.part == "its JSON body"
    assert server.log == []


def test_a_form_body_of_the_wrong_type_is_refused_and_pairs_are_sent_by_both_transports(server: HTTPServer) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        with pytest.raises(ConfigurationError, match="form body"):
            client.post("/x", data=5)
        with pytest.raises(RequestBuildError, match="form body"):
            call(client.post("/x", data=lambda _: 5.0), {})
    with pytest.raises(RequestBuildError, match="async iterable"):  # httpx cannot stream a sync generator
        call(AsyncClient(server.url_for("")).post("/x", data=lambda _: iter([b"x"])), {})
    assert server.log == []

    def body(seen: dict[str, Any]) -> tuple[str, str]:
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        return seen.get("query", ""), headers.get("content-type", "")

    for data in ([("a", "1"), ("a", "2")], (("a", "1"), ("a", "2")), bytearray(b"a=1&a=2")):
        sync = Client(server.url_for("")).post("/f", data=data).capture("seen", "$")({})["seen"]
        assert body(sync)[0] == ""

        async def go(data: Any = data) -> dict[str, Any]:
            api = AsyncClient(server.url_for(""))
            try:
                return (await api.post("/f", data=data).capture("seen", "$")({}))["seen"]
            finally:
                await api.aclose()

        seen = asyncio.run(go())
        if not isinstance(data, bytearray):
            assert body(seen)[1] == "application/x-www-form-urlencoded"
    assert [entry[0].get_data() for entry in server.log[-6:]] == [b"a=1&a=2"] * 6


@pytest.mark.parametrize("returned", [5, None, "Authorization: Bearer T0p-5ecret", [("X-A", "1", "extra")]])
def test_a_headers_or_params_function_returning_no_mapping_is_a_build_error_never_showing_it(
    server: HTTPServer, returned: Any
) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        for option in ("headers", "params"):
            with pytest.raises(RequestBuildError, match=f"its {option}") as caught:
                call(client.get("/x", **{option: lambda _: returned}), {})
            assert caught.value.part == f"its {option}"
            assert "T0p-5ecret" not in str(caught.value)
    assert server.log == []


@pytest.mark.parametrize(
    "params", [{"a": {"b": 1}}, {"a": {1, 2}}, {"a": math.nan}, {"a": [1, math.inf]}, {"a": lambda _: {"k": 1}}]
)
def test_a_param_value_that_would_be_sent_wrongly_is_refused_naming_it(server: HTTPServer, params: Any) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        with pytest.raises((ConfigurationError, RequestBuildError), match="param 'a'"):
            call(client.get("/x", params=params), {})
    assert server.log == []


def test_a_computed_header_that_is_not_a_finite_number_is_refused(server: HTTPServer) -> None:
    for client in (Client(server.url_for("")), AsyncClient(server.url_for(""))):
        with pytest.raises(RequestBuildError, match="'X-Ratio'"):
            call(client.get("/x", headers={"X-Ratio": lambda _: math.nan}), {})
    assert server.log == []


def test_an_empty_query_value_is_refused_saying_where(server: HTTPServer) -> None:
    with pytest.raises(RequestBuildError, match="query value"):
        Client(server.url_for("")).get("/search?q={q}")({"q": ""})
