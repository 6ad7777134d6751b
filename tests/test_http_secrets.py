"""Secrets never leave the process: every place one could surface, sync and async, against real servers."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import re
import socket
import traceback
from typing import TYPE_CHECKING, Any

import pytest
import requests
import structlog
from pytest_httpserver import HTTPServer
from structlog.testing import capture_logs
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from service_flow import Driver, Flow
from service_flow.http import (
    AsyncClient,
    AsyncPoll,
    BasicAuth,
    BearerAuth,
    CheckFailed,
    Client,
    Header,
    HTTPError,
    JsonPath,
    Poll,
    RequestBuildError,
    add_sensitive_names,
    as_condition,
)
from service_flow.http import _redact as redact

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

KEY = "K3y-5ecret-a1b2c3"
TOKEN = "T0ken-5ecret-d4e5f6"  # noqa: S105 - a fake secret the tests hunt for
PASSWORD = "hunter22-5ecret"  # noqa: S105 - a fake secret the tests hunt for
SIGNATURE = "51gnature-5ecret-0099"
CUSTOM = "Tenant-5ecret-7788"
SECRETS = (KEY, TOKEN, PASSWORD, SIGNATURE, CUSTOM)

add_sensitive_names("X-SF-Tenant-Key")  # the documented way to add a name (process-wide)


def chain(error: BaseException | None) -> list[BaseException]:
    """``error`` and everything reachable through ``__cause__`` and ``__context__``."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        item = todo.pop()
        if item is None or any(item is known for known in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__]
    return seen


def exposed(*things: Any) -> str:
    """Everything a user could print about ``things``: str, repr, vars, exception chains, tracebacks."""
    parts: list[str] = []
    for thing in things:
        parts += [str(thing), repr(thing)]
        if isinstance(thing, BaseException):
            for link in chain(thing):
                parts += [str(link), repr(link), repr(link.args), repr(getattr(link, "__dict__", {}))]
                parts.append("".join(traceback.format_exception(type(link), link, link.__traceback__)))
            parts.append(repr(http_frames(thing)))
    return "\n".join(parts)


def http_frames(error: BaseException) -> list[dict[str, Any]]:
    """The frames of the HTTP services in ``error``'s traceback as structlog's dict_tracebacks renders
    them, locals included (the core's frames hold the context, which may carry secrets of its own)."""
    transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=True, locals_max_string=400)
    stacks = transformer((type(error), error, error.__traceback__))
    return [frame for stack in stacks for frame in stack["frames"] if "service_flow/http/" in frame["filename"]]


def assert_hidden(text: str, secrets: tuple[str, ...] = SECRETS) -> None:
    for secret in secrets:
        at = text.find(secret)
        assert at < 0, f"{secret!r} leaked: ...{text[max(0, at - 300) : at + 300]}..."


def echo(status: int = 200) -> Any:
    """A careless server: echoes the request (secrets included) and says the password is wrong."""

    def handler(request: WRequest) -> WResponse:
        body = {
            "said": f"wrong password {PASSWORD} for ada:{PASSWORD}",
            "url": request.url,
            "headers": dict(request.headers.items()),
        }
        return WResponse(json.dumps(body), status=status, content_type="application/json")

    return handler


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def stdlib_capture(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """structlog configured onto the standard library, everything at debug captured by caplog."""
    structlog.configure(
        processors=[structlog.processors.dict_tracebacks, structlog.processors.KeyValueRenderer()],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    caplog.set_level(logging.DEBUG)
    return caplog


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """What the application's handlers got (the test server's own access log left out)."""
    records = [record for record in caplog.records if record.name != "werkzeug"]
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


# -- names derived from URLs -----------------------------------------------------------


def test_default_names_are_masked_in_every_place_they_appear(
    httpserver: HTTPServer, events: list[dict[str, Any]]
) -> None:
    httpserver.expect_request("/x").respond_with_handler(echo(400))
    url = httpserver.url_for("").replace("http://", f"http://ada:{PASSWORD}@") + f"/x?api_key={KEY}&sig={SIGNATURE}"
    step = Client().get(url)
    poll = Poll(Client().get(url), until=lambda _: False, max_attempts=1, interval=0)
    assert "api_key=***" in step.name
    for service in (step, poll):
        flow = Flow(service)
        run = flow.run({})
        assert isinstance(run.error, HTTPError)
        report = Driver(flow).run([{}])
        assert_hidden(exposed(flow, flow.name, run, run.error, run.steps, [s.name for s in run.steps], report))
        assert_hidden(exposed(*report.dead_letters, *(e for d in report.dead_letters for e in d.errors)))
    assert_hidden(repr(events))


# -- exception chains --------------------------------------------------------------------


def test_transport_errors_keep_only_masked_copies_in_their_chain(events: list[dict[str, Any]]) -> None:
    port = closed_port()
    client = Client(f"http://ada:{PASSWORD}@127.0.0.1:{port}", auth=BearerAuth(TOKEN), timeout=1)
    step = client.get("/keys/{api_key}", params={"token": TOKEN}, headers={"X-Api-Key": KEY})
    with pytest.raises(HTTPError) as caught:
        step({"api_key": KEY})
    links = chain(caught.value)
    assert any(isinstance(link, requests.ConnectionError) for link in links[1:])  # still matches except clauses
    for link in links[1:]:
        assert link.__traceback__ is None
        assert getattr(link, "request", None) is None
    assert "/keys/***" in caught.value.url
    assert_hidden(exposed(caught.value))
    assert_hidden(repr(pickle.loads(pickle.dumps(caught.value)).__dict__))
    assert_hidden(repr(events))


def test_async_transport_errors_keep_only_masked_copies_in_their_chain(events: list[dict[str, Any]]) -> None:
    import httpx

    port = closed_port()

    async def go() -> BaseException:
        api = AsyncClient(f"http://ada:{PASSWORD}@127.0.0.1:{port}", auth=BearerAuth(TOKEN), timeout=1)
        try:
            await api.get("/keys/{api_key}", params={"token": TOKEN}, headers={"X-Api-Key": KEY})({"api_key": KEY})
        except HTTPError as error:
            return error
        finally:
            await api.aclose()
        raise AssertionError

    error = asyncio.run(go())
    assert any(isinstance(link, httpx.ConnectError) for link in chain(error)[1:])
    assert_hidden(exposed(error))
    assert_hidden(repr(events))


def test_poll_ignore_still_matches_the_transport_s_error() -> None:
    poll = Poll(
        Client(f"http://127.0.0.1:{closed_port()}", timeout=1).get(f"/x?api_key={KEY}"),
        until=lambda _: True,
        ignore=[requests.ConnectionError],
        max_attempts=2,
        interval=0,
    )
    with pytest.raises(HTTPError, match="no success after 2 polls") as caught:
        poll({})
    assert_hidden(exposed(caught.value))


# -- what servers echo ----------------------------------------------------------------------


def test_basic_auth_passwords_are_scrubbed_from_excerpts(httpserver: HTTPServer, events: list[dict[str, Any]]) -> None:
    httpserver.expect_request("/login").respond_with_handler(echo(401))
    for client in (Client(httpserver.url_for(""), auth=BasicAuth("ada", PASSWORD)),):
        run = Flow(client.get("/login")).run({})
        assert isinstance(run.error, HTTPError)
        assert run.error.response is not None
        assert "wrong password ***" in run.error.response.excerpt
        assert_hidden(exposed(run, run.error))
    assert_hidden(repr(events))


def test_async_basic_auth_passwords_are_scrubbed_from_excerpts(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/login").respond_with_handler(echo(401))

    async def go() -> Any:
        api = AsyncClient(httpserver.url_for(""), auth=BasicAuth("ada", PASSWORD))
        try:
            return await Flow(api.get("/login")).arun({})
        finally:
            await api.aclose()

    run = asyncio.run(go())
    assert isinstance(run.error, HTTPError)
    assert_hidden(exposed(run, run.error))


@pytest.mark.parametrize("before", [790, 795, 799, 805])
def test_a_secret_cut_by_the_excerpt_is_still_masked(httpserver: HTTPServer, before: int) -> None:
    body = " " * before + TOKEN + " tail" + "x" * 5000
    httpserver.expect_request("/x").respond_with_data(body, status=500)
    client = Client(httpserver.url_for(""), auth=BearerAuth(TOKEN))
    with pytest.raises(HTTPError) as caught:
        client.post("/x")({})
    assert TOKEN[:5] not in str(caught.value)
    assert_hidden(exposed(caught.value))


def test_a_secret_is_masked_wherever_the_excerpt_cuts_it() -> None:
    for before in range(700, 1100):
        body = (" " * before + TOKEN + " " + "x" * 3000).encode()
        assert TOKEN[:4] not in redact.excerpt(body, [TOKEN]), before


def test_excerpts_mask_unterminated_quoted_secrets() -> None:
    text = redact.excerpt(('{"password": "correct horse ' + "b" * 2000).encode())
    assert "correct" not in text


# -- checks and conditions ----------------------------------------------------------------


def test_expected_values_of_sensitive_headers_are_masked_in_checks(
    httpserver: HTTPServer, events: list[dict[str, Any]]
) -> None:
    httpserver.expect_request("/x").respond_with_json({"ok": True}, headers={"X-Api-Key": "other"})
    step = Client(httpserver.url_for("")).get("/x").check(headers={"X-Api-Key": KEY, "X-Trace": "t1"})
    run = Flow(step).run({})
    assert isinstance(run.error, CheckFailed)
    assert "Header('X-Api-Key', ***)" in str(run.error)
    assert_hidden(exposed(run, run.error))
    assert_hidden(repr(events))


def test_conditions_never_show_expected_secrets() -> None:
    conditions = [
        Header("X-Api-Key", KEY),
        JsonPath("$.auth.access_token") == TOKEN,
        as_condition({"json": {"user": "ada", "password": PASSWORD}}),
        as_condition({"jsonpath": [{"expression": "$.signature", "value": SIGNATURE}]}),
    ]
    for condition in conditions:
        assert_hidden(repr(condition))
    assert "'user': 'ada'" in repr(conditions[2])  # what is not secret is still shown


# -- headers with line breaks ----------------------------------------------------------------


def test_a_secret_with_a_line_break_is_never_shown(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_json({})
    for auth, headers in (
        (BearerAuth(lambda: TOKEN + "\nX-Evil: 1"), None),
        (None, {"X-Api-Key": lambda _: KEY + "\n"}),
    ):
        client = Client(httpserver.url_for(""), auth=auth)
        with pytest.raises(RequestBuildError) as caught:
            client.get("/x", headers=headers)({})
        assert "line break" in str(caught.value)
        assert_hidden(exposed(caught.value))
    assert httpserver.log == []
    shown = redact.scrub("InvalidHeader: 'ab sec\\nret'", ["sec\nret"])  # as requests' message shows it
    assert "sec" not in shown


# -- tracebacks rendered with locals ----------------------------------------------------


def test_dict_tracebacks_show_no_credential_from_the_send_path(
    httpserver: HTTPServer, stdlib_capture: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/x").respond_with_data("no", status=401)
    client = Client(httpserver.url_for(""), auth=BearerAuth(TOKEN), headers={"X-Api-Key": KEY})
    log = structlog.get_logger("app")
    cases = [
        (client.get("/x"), {}),  # a status error raised after sending
        (Client(f"http://127.0.0.1:{closed_port()}", auth=BasicAuth("ada", PASSWORD), timeout=1).get("/x"), {}),
        (client.get("/x", headers={"X-Sig": lambda ctx: ctx["sig"]["v"]}), {"sig": {}}),  # a failing function
        (client.get("/x", headers={"X-Auth-Token": lambda _: TOKEN + "é"}), {}),  # an unsendable value
    ]

    def logged(step: Any, context: dict[str, Any]) -> None:
        try:
            step(context)
        except Exception:
            log.exception("request failed")  # as an application would

    for step, context in cases:
        logged(step, context)
    text = stdlib_capture.text
    assert text.count("request failed") == len(cases)
    assert "'frames'" in text  # the tracebacks were rendered, with locals
    assert "service_flow/http/client.py', 'lineno'" in text  # the send path's frames among them
    for record in stdlib_capture.records:
        if record.name == "app":
            rendered = record.getMessage()
            frames = re.findall(r"\{'filename': '[^']*service_flow/http/[^}]*\}", rendered)
            assert frames
            assert_hidden("\n".join(frames))


async def failure(step: Any) -> BaseException:
    try:
        await step({})
    except HTTPError as error:
        return error
    raise AssertionError(step)


def test_async_dict_tracebacks_show_no_credential(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("no", status=401)

    async def go() -> list[BaseException]:
        api = AsyncClient(httpserver.url_for(""), auth=BearerAuth(TOKEN), headers={"X-Api-Key": KEY})
        down = AsyncClient(f"http://127.0.0.1:{closed_port()}", auth=BasicAuth("ada", PASSWORD), timeout=1)
        steps = (api.get("/x"), down.get("/x"), api.get("/x", headers={"X-A": lambda _: TOKEN + "\n"}))
        errors = [await failure(step) for step in steps]
        await api.aclose()
        await down.aclose()
        return errors

    errors = asyncio.run(go())
    assert len(errors) == 3
    for error in errors:
        assert_hidden(exposed(error))


def every_frame(error: BaseException) -> str:
    transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=True, locals_max_string=400)
    return repr(transformer((type(error), error, error.__traceback__)))


def frame_files(error: BaseException) -> list[str]:
    transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=True)
    return [
        frame["filename"]
        for stack in transformer((type(error), error, error.__traceback__))
        for frame in stack["frames"]
    ]


def test_an_error_from_inside_requests_keeps_its_type_and_no_frame_with_credentials(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/upload").respond_with_json({})

    def chunks() -> Iterator[bytes]:
        yield b"first"
        raise ValueError("the source broke")

    client = Client(httpserver.url_for(""), auth=BearerAuth(TOKEN), headers={"X-Api-Key": KEY})
    with pytest.raises(ValueError, match="the source broke") as caught:
        client.post("/upload", data=lambda _: chunks())({})
    files = frame_files(caught.value)
    assert any("service_flow/http/client.py" in file for file in files)
    assert not any("/requests/" in file or "/urllib3/" in file for file in files)  # frames holding the headers
    assert_hidden(every_frame(caught.value))
    assert_hidden(exposed(caught.value))


def test_an_error_from_inside_httpx_keeps_its_type_and_no_frame_with_credentials(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_json({})

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        raise ValueError("the source broke")

    async def go() -> BaseException:
        api = AsyncClient(httpserver.url_for(""), auth=BearerAuth(TOKEN), headers={"X-Api-Key": KEY})
        try:
            await api.post("/x", data=lambda _: chunks())({})
        except ValueError as error:  # raised while httpx streams the body
            return error
        finally:
            await api.aclose()
        raise AssertionError

    error = asyncio.run(go())
    files = frame_files(error)
    assert any("service_flow/http/aio.py" in file for file in files)
    assert not any("/httpx/" in file for file in files)
    assert_hidden(every_frame(error))


# -- the transport's own loggers --------------------------------------------------------


def test_urllib3_retry_warnings_and_debug_lines_are_masked(
    httpserver: HTTPServer, stdlib_capture: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request(re.compile("/keys/.*")).respond_with_json({"ok": True})
    Client(httpserver.url_for("")).get(f"/keys/{{api_key}}?sig={SIGNATURE}", params={"api_key": KEY})({"api_key": KEY})
    down = Client(f"http://127.0.0.1:{closed_port()}", retries=2, timeout=1)
    with pytest.raises(HTTPError):
        down.get(f"/x?api_key={KEY}&X-Amz-Signature={SIGNATURE}")({})
    text = everything_logged(stdlib_capture)
    assert "urllib3" in text  # the debug lines and the retry warnings are there...
    assert "Retrying" in text
    assert "api_key=***" in text
    assert "/keys/***" in text
    assert_hidden(text)  # ...masked


def test_httpx_request_lines_are_masked(httpserver: HTTPServer, stdlib_capture: pytest.LogCaptureFixture) -> None:
    httpserver.expect_request(re.compile("/keys/.*")).respond_with_json({"ok": True})

    async def go() -> None:
        api = AsyncClient(httpserver.url_for(""))
        try:
            await api.get("/keys/{api_key}", params={"token": TOKEN, "sig": SIGNATURE})({"api_key": KEY})
        finally:
            await api.aclose()

    asyncio.run(go())
    lines = [r.getMessage() for r in stdlib_capture.records if r.name == "httpx"]
    assert lines
    assert "/keys/***" in lines[0]
    assert_hidden(everything_logged(stdlib_capture))


# -- redirects to another origin ----------------------------------------------------------

SENSITIVE_SENT = {
    "X-Api-Key": KEY,
    "X-Auth-Token": TOKEN,
    "Proxy-Authorization": f"Basic {TOKEN}",
    "Ocp-Apim-Subscription-Key": KEY,
    "X-SF-Tenant-Key": CUSTOM,
    "X-Trace": "t1",
}


@pytest.fixture
def other_origin() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.2")
    server.expect_request("/landing").respond_with_handler(echo())
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def received(result: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in result["seen"]["headers"].items()}


def test_a_redirect_to_another_origin_drops_every_sensitive_header(
    httpserver: HTTPServer, other_origin: HTTPServer
) -> None:
    target = f"http://127.0.0.2:{other_origin.port}/landing"
    httpserver.expect_request("/away").respond_with_data("", status=302, headers={"Location": target})
    httpserver.expect_request("/here").respond_with_data("", status=302, headers={"Location": "/landing"})
    httpserver.expect_request("/landing").respond_with_handler(echo())
    client = Client(httpserver.url_for(""), auth=BearerAuth(TOKEN), headers=SENSITIVE_SENT)
    away = received(client.get("/away").capture("seen", "$")({}))
    assert away["x-trace"] == "t1"
    for name in (*SENSITIVE_SENT, "Authorization"):
        if name != "X-Trace":
            assert name.lower() not in away
    here = received(client.get("/here").capture("seen", "$")({}))  # the same origin keeps them
    assert here["x-api-key"] == KEY
    assert here["authorization"] == f"Bearer {TOKEN}"


def test_an_async_redirect_to_another_origin_drops_every_sensitive_header(
    httpserver: HTTPServer, other_origin: HTTPServer
) -> None:
    target = f"http://127.0.0.2:{other_origin.port}/landing"
    httpserver.expect_request("/away").respond_with_data("", status=302, headers={"Location": target})
    httpserver.expect_request("/here").respond_with_data("", status=302, headers={"Location": "/landing"})
    httpserver.expect_request("/landing").respond_with_handler(echo())

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        api = AsyncClient(httpserver.url_for(""), auth=BearerAuth(TOKEN), headers=SENSITIVE_SENT)
        try:
            return (
                await api.get("/away").capture("seen", "$")({}),
                await api.get("/here").capture("seen", "$")({}),
            )
        finally:
            await api.aclose()

    away_result, here_result = asyncio.run(go())
    away = received(away_result)
    assert away["x-trace"] == "t1"
    for name in (*SENSITIVE_SENT, "Authorization"):
        if name != "X-Trace":
            assert name.lower() not in away
    here = received(here_result)
    assert here["x-api-key"] == KEY
    assert here["authorization"] == f"Bearer {TOKEN}"


# -- the names treated as secrets ----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["X-Amz-Signature", "X-Amz-Credential", "X-Goog-Signature", "Signature", "sig", "AWSAccessKeyId"]
)
def test_presigned_url_parameters_are_masked(httpserver: HTTPServer, events: list[dict[str, Any]], name: str) -> None:
    httpserver.expect_request("/object").respond_with_data("denied", status=403)
    run = Flow(Client(httpserver.url_for("")).get("/object", params={name: SIGNATURE, "X-Amz-Expires": "60"})).run({})
    assert isinstance(run.error, HTTPError)
    assert "X-Amz-Expires=60" in run.error.url
    assert_hidden(exposed(run, run.error))
    assert_hidden(repr(events))


def test_subscription_keys_and_added_names_are_masked(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_handler(echo(400))
    headers = {"Ocp-Apim-Subscription-Key": KEY, "X-SF-Tenant-Key": CUSTOM}
    with capture_logs() as events:
        run = Flow(Client(httpserver.url_for(""), headers=headers).get("/x", params={"x_sf_tenant_key": CUSTOM})).run(
            {}
        )
    assert isinstance(run.error, HTTPError)
    assert run.error.response is not None
    assert redact.scrub(f'{{"X-SF-Tenant-Key": "{CUSTOM}"}}', ()) == '{"X-SF-Tenant-Key": ***}'  # a server's echo
    assert_hidden(exposed(run, run.error), (KEY, CUSTOM))  # (the server's words about a password are not known)
    assert_hidden(repr(events), (KEY, CUSTOM))
    assert redact.is_sensitive_header("x-sf-tenant-key")
    assert not redact.is_sensitive_field("design")  # "sig" is a whole name, not a part


def test_sensitive_placeholders_are_masked_in_urls_shown(httpserver: HTTPServer) -> None:
    httpserver.expect_request(re.compile("/keys/.*")).respond_with_data("nope", status=404)
    with capture_logs() as events:
        run = Flow(Client(httpserver.url_for("")).get("/keys/{api_key}/rotate")).run({"api_key": KEY})
    assert isinstance(run.error, HTTPError)
    assert "/keys/***/rotate" in run.error.url
    assert_hidden(exposed(run.error, run.error.url))
    assert_hidden(repr(events))

    async def go() -> Any:
        api = AsyncClient(httpserver.url_for(""))
        try:
            return await Flow(AsyncPoll(api.get("/keys/{api_key}"), until=lambda _: False, max_attempts=1)).arun(
                {"api_key": KEY}
            )
        finally:
            await api.aclose()

    arun = asyncio.run(go())
    assert isinstance(arun.error, HTTPError)
    assert "/keys/***" in str(arun.error)
    assert_hidden(exposed(arun.error))


# -- found by acceptance testing ------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "Token", "ApiKey", "Basic"])
def test_an_authorization_line_a_server_echoes_is_masked_scheme_and_all(httpserver: HTTPServer, scheme: str) -> None:
    # A token the client did not send (a proxy's, another user's): only its place tells it is secret.
    httpserver.expect_request("/x").respond_with_data(f"debug: authorization: {scheme} {TOKEN} end", status=400)
    for client in (Client(httpserver.url_for("")),):
        run = Flow(client.get("/x")).run({})
        assert isinstance(run.error, HTTPError)
        assert run.error.response is not None
        assert "authorization: ***" in run.error.response.excerpt
        assert_hidden(exposed(run.error))


def test_a_non_ascii_password_echoed_in_json_is_masked(httpserver: HTTPServer) -> None:
    password = "pässwörd-5ecret"  # noqa: S105 - a fake secret the tests hunt for
    httpserver.expect_request("/x").respond_with_json({"said": f"wrong password {password}"}, status=401)
    with pytest.raises(HTTPError) as caught:
        Client(httpserver.url_for(""), auth=BasicAuth("ada", password)).get("/x")({})
    assert "p\\u00e4ssw" not in str(caught.value)
    assert_hidden(exposed(caught.value), (password,))


def test_urls_in_response_headers_keep_no_signature_and_names_keep_their_case(httpserver: HTTPServer) -> None:
    location = f"https://bucket.example.com/o?X-Amz-Credential=AKIA&X-Amz-Signature={SIGNATURE}&X-Amz-Expires=60"
    httpserver.expect_request("/download").respond_with_data(
        "", status=302, headers={"Location": location, "Link": f"<https://ada:{PASSWORD}@h/>; rel=next"}
    )

    async def go() -> BaseException | None:
        api = AsyncClient(httpserver.url_for(""))
        try:
            return (await Flow(api.get("/download", allow_redirects=False).check(status=200)).arun({})).error
        finally:
            await api.aclose()

    errors = [
        Flow(Client(httpserver.url_for("")).get("/download", allow_redirects=False).check(status=200)).run({}).error
    ]
    errors.append(asyncio.run(go()))
    for error in errors:
        assert isinstance(error, CheckFailed)
        assert error.response is not None
        assert error.response.headers["Location"].endswith("X-Amz-Signature=***&X-Amz-Expires=60")
        assert error.response.headers["Link"] == "<https://***@h/>; rel=next"
        assert_hidden(exposed(error, error.response))
