"""Secrets never reach a log line or an error message."""

from __future__ import annotations

import json
import logging
import pickle
import socket
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from service_flow import Flow
from service_flow.http import BasicAuth, BearerAuth, Client, HTTPError
from service_flow.http import _redact as redact

if TYPE_CHECKING:
    from pytest_httpserver import HTTPServer

TOKEN = "tok-9f8e7d6c5b4a"  # noqa: S105 - a fake secret the test hunts for
API_KEY = "key-0a1b2c3d4e5f"
PASSWORD = "pw-correct-horse"  # noqa: S105 - a fake secret the test hunts for
COOKIE = "sess-1234567890"
SECRETS = (TOKEN, API_KEY, PASSWORD, COOKIE, "pw-basic-secret")


def echo_everything(status: int) -> Any:
    """A careless server: echoes the request, secrets included, and sets a cookie."""

    def handler(request: WRequest) -> WResponse:
        body = {
            "headers": dict(request.headers.items()),
            "url": request.url,
            "body": request.get_data(as_text=True),
            "token": TOKEN,
        }
        response = WResponse(json.dumps(body), status=status, content_type="application/json")
        response.headers["Set-Cookie"] = f"session={COOKIE}"
        return response

    return handler


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into: {text}"


@pytest.mark.parametrize("status", [400, 401, 500, 503])
def test_secrets_are_in_no_error_message_and_no_log_line(
    httpserver: HTTPServer, events: list[dict[str, Any]], status: int
) -> None:
    httpserver.expect_request("/login").respond_with_handler(echo_everything(status))
    client = Client(httpserver.url_for(""), auth=BearerAuth(lambda: TOKEN), headers={"Cookie": f"s={COOKIE}"})
    step = client.post(
        "/login",
        params={"api_key": API_KEY, "page": 1},
        json={"user": "ada", "password": PASSWORD, "nested": {"access_token": TOKEN}},
        idempotent=True,
    )
    flow = Flow(step, name="login")
    run = flow.run({})
    error = run.error
    assert isinstance(error, HTTPError)
    assert_no_secret(str(error))
    assert_no_secret(repr(error))
    assert_no_secret(repr(vars(error)))
    assert_no_secret(repr(pickle.loads(pickle.dumps(error)).__dict__))
    assert error.response is not None
    assert error.response.headers["Set-Cookie"] == redact.MASK
    assert "api_key=%2A%2A%2A" in error.url or "api_key=***" in error.url
    assert events
    assert_no_secret(repr(events))


def test_form_bodies_basic_auth_and_urls_with_user_info(httpserver: HTTPServer, events: list[dict[str, Any]]) -> None:
    httpserver.expect_request("/form").respond_with_handler(echo_everything(422))
    client = Client(httpserver.url_for(""), auth=BasicAuth("ada", "pw-basic-secret"))
    step = client.post("/form", data={"token": TOKEN, "password": PASSWORD}, params={"token": TOKEN})
    with pytest.raises(HTTPError) as caught:
        step({})
    assert_no_secret(str(caught.value))
    assert_no_secret(repr(events))


def test_transport_errors_mask_the_url(events: list[dict[str, Any]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(f"http://ada:{PASSWORD}@127.0.0.1:{port}", timeout=1)
    with pytest.raises(HTTPError) as caught:
        client.get("/x", params={"api_key": API_KEY})({})
    assert_no_secret(str(caught.value))
    assert_no_secret(repr(events))
    assert "127.0.0.1" in str(caught.value)


def test_debug_logs_rendered_by_an_application_carry_no_secret(
    httpserver: HTTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    httpserver.expect_request("/ok").respond_with_json({"token": TOKEN})
    client = Client(httpserver.url_for(""), auth=BearerAuth(TOKEN))
    client.get("/ok", params={"token": TOKEN}).capture("t", "$.token")({})
    out = capsys.readouterr().out
    assert "http.request" in out
    assert_no_secret(out)


def test_redaction_helpers() -> None:
    assert redact.url("https://u:p@h/x?a=1&api_key=s&b=2") == "https://***@h/x?a=1&api_key=***&b=2"
    assert redact.url("https://h/x") == "https://h/x"
    assert redact.headers({"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "a"}) == {
        "Authorization": "***",
        "X-Api-Key": "***",
        "Accept": "a",
    }
    assert (
        redact.scrub('{"refresh_token": "abc", "n": 1} Bearer xyz', ()) == '{"refresh_token": ***, "n": 1} Bearer ***'
    )
    assert redact.excerpt(b"\x00\x01binary") == "<8 bytes of binary content>"
    assert redact.excerpt("é".encode() * 300)[-1] == "…"
    assert redact.excerpt(b"\xe2\x82") == ""  # a character cut in two
    assert redact.is_sensitive_field("Client-Secret")
    assert not redact.is_sensitive_field("author")
