"""Authentication: basic, bearer from a token function, refresh-and-retry-once on 401."""

from __future__ import annotations

import pickle
import threading
from typing import TYPE_CHECKING, Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request as WRequest
from werkzeug import Response as WResponse

from service_flow.exceptions import ConfigurationError
from service_flow.http import Auth, BasicAuth, BearerAuth, Client, ResponseError

if TYPE_CHECKING:
    from collections.abc import Iterator


class Tokens:
    """A token endpoint stand-in: each call hands out the next token."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.calls += 1
            return self.tokens[min(self.calls, len(self.tokens)) - 1]


def accepting(token: str) -> Any:
    def handler(request: WRequest) -> WResponse:
        if request.headers.get("Authorization") == f"Bearer {token}":
            return WResponse('{"ok": true}', content_type="application/json")
        return WResponse('{"error": "expired"}', status=401, content_type="application/json")

    return handler


@pytest.fixture
def threaded() -> Iterator[HTTPServer]:
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def test_basic_auth_is_sent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x", headers={"Authorization": "Basic YWRhOnMzY3JldA=="}).respond_with_json({})
    client = Client(httpserver.url_for(""), auth=BasicAuth("ada", "s3cret"))
    assert client.get("/x")({}) == {}
    assert "s3cret" not in repr(client.auth)
    assert isinstance(client.auth, Auth)


def test_a_bearer_token_function_is_called_once_and_its_token_reused(httpserver: HTTPServer) -> None:
    tokens = Tokens("t1")
    httpserver.expect_request("/x").respond_with_handler(accepting("t1"))
    client = Client(httpserver.url_for(""), auth=BearerAuth(tokens))
    for _ in range(3):
        client.get("/x")({})
    assert tokens.calls == 1


def test_a_401_refreshes_the_token_and_retries_once(httpserver: HTTPServer, events: list[dict[str, Any]]) -> None:
    tokens = Tokens("old", "new")
    httpserver.expect_request("/x").respond_with_handler(accepting("new"))
    client = Client(httpserver.url_for(""), auth=BearerAuth(tokens))
    assert client.get("/x").capture("ok", "$.ok")({}) == {"ok": True}
    assert tokens.calls == 2
    logged = [(e["status"], e["attempt"]) for e in events if e["event"] == "http.request"]
    assert logged == [(401, 1), (200, 2)]
    client.get("/x")({})
    assert tokens.calls == 2  # the new token is kept


def test_a_second_401_is_a_failure_not_a_loop(httpserver: HTTPServer) -> None:
    tokens = Tokens("a", "b", "c")
    httpserver.expect_request("/x").respond_with_handler(accepting("never"))
    client = Client(httpserver.url_for(""), auth=BearerAuth(tokens))
    with pytest.raises(ResponseError) as caught:
        client.get("/x")({})
    assert caught.value.status == 401
    assert tokens.calls == 2
    assert len(httpserver.log) == 2


def test_a_fixed_token_is_not_retried(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_handler(accepting("other"))
    client = Client(httpserver.url_for(""), auth=BearerAuth("fixed"))
    with pytest.raises(ResponseError):
        client.get("/x")({})
    assert len(httpserver.log) == 1


def test_a_separate_refresh_function_is_used_after_a_401(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_handler(accepting("fresh"))
    client = Client(httpserver.url_for(""), auth=BearerAuth("stale", refresh=lambda: "fresh"))
    assert client.get("/x")({}) == {}


def test_threads_hitting_a_401_together_fetch_one_new_token(threaded: HTTPServer) -> None:
    tokens = Tokens("old", "new", "newer")
    threaded.expect_request("/x").respond_with_handler(accepting("new"))
    client = Client(threaded.url_for(""), auth=BearerAuth(tokens))
    step = client.get("/x").capture("ok", "$.ok")
    barrier = threading.Barrier(8)
    results: list[object] = []

    def call() -> None:
        barrier.wait()
        try:
            results.append(step({}))
        except Exception as error:
            results.append(error)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [{"ok": True}] * 8
    assert tokens.calls == 2
    client.teardown()


def test_the_response_discarded_by_the_401_retry_is_released(httpserver: HTTPServer) -> None:
    tokens = Tokens("old", "new")
    httpserver.expect_request("/x").respond_with_handler(accepting("new"))
    client = Client(httpserver.url_for(""), auth=BearerAuth(tokens), timeout=2)
    # One pooled connection, waited for when taken: an unreleased 401 would hang the retry.
    client.session.get_adapter("http://").init_poolmanager(1, 1, block=True)
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(client.get("/x")({})), daemon=True)
    worker.start()
    worker.join(10)
    assert done == [{}]


def test_bearer_auth_pickles_without_its_cached_token(httpserver: HTTPServer) -> None:
    auth = BearerAuth(token_source)
    auth.headers()
    copy = pickle.loads(pickle.dumps(auth))
    assert copy._headers is None
    assert copy.headers() == {"Authorization": "Bearer t9"}


def token_source() -> str:
    return "t9"


def test_bad_tokens_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="string or a function"):
        BearerAuth(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="non-empty"):
        BearerAuth(lambda: "").headers()
