"""The environment (proxies, NO_PROXY, .netrc) is honoured, read once per session, and ignored with trust_env=False."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from service_flow.http import AsyncClient, BearerAuth, Client, TransportError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def serve(name: str) -> tuple[ThreadingHTTPServer, str]:
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = {"via": name, "line": self.path, "auth": self.headers.get("Authorization")}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """``(the API's URL, a proxy's URL)``: both answer with who they are."""
    api, api_url = serve("direct")
    proxy, proxy_url = serve("proxy")
    yield api_url, proxy_url
    for server in (api, proxy):
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def seen(client: Client, path: str = "/x") -> dict[str, Any]:
    return client.get(path).capture("seen", "$")({})["seen"]  # type: ignore[no-any-return]


def test_proxies_from_the_environment_are_honoured(servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with Client(api) as client:
        answer = seen(client)
    assert answer["via"] == "proxy"
    assert answer["line"] == f"{api}/x"  # a proxy gets the absolute URL
    monkeypatch.setenv("http_proxy", proxy)  # lower case wins, as with requests
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    with Client(api) as client:
        assert seen(client)["via"] == "proxy"


def test_no_proxy_sends_directly(servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)
    for no_proxy in ("127.0.0.1", "127.0.0.0/8", "*", "localhost,127.0.0.1"):
        monkeypatch.setenv("NO_PROXY", no_proxy)
        with Client(api) as client:
            assert seen(client)["via"] == "direct", no_proxy


def test_trust_env_false_ignores_the_environment(servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with Client(api, trust_env=False) as client:
        assert seen(client)["via"] == "direct"


def test_the_environment_is_read_when_the_session_opens(
    servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = servers
    client = Client(api)
    assert seen(client)["via"] == "direct"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    assert seen(client)["via"] == "direct"  # the session opened before: it read the environment then
    client.setup()  # a restart reads it afresh
    assert seen(client)["via"] == "proxy"
    client.teardown()


def test_netrc_credentials_apply_unless_the_request_authenticates(
    servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api, _ = servers
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login ada password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Client(api) as client:
        assert seen(client)["auth"] == "Basic YWRhOnMzY3JldA=="
    with Client(api, auth=BearerAuth("tok")) as client:
        assert seen(client)["auth"] == "Bearer tok"  # the user's auth is never replaced
    with Client(api, headers={"Authorization": "Token abc"}) as client:
        assert seen(client)["auth"] == "Token abc"
    with Client(api, trust_env=False) as client:
        assert seen(client)["auth"] is None


def test_netrc_is_read_when_the_session_opens(
    servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api, _ = servers
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("machine 127.0.0.1 login ada password s3cret\n")
    second.write_text("default login bob password hunter22\n")
    for path in (first, second):
        path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(first))
    with Client(api) as client:
        assert seen(client)["auth"] == "Basic YWRhOnMzY3JldA=="
        monkeypatch.setenv("NETRC", str(second))
        first.write_text("machine 127.0.0.1 login eve password changed\n")
        assert seen(client)["auth"] == "Basic YWRhOnMzY3JldA=="  # read once, when the session opened
        client.setup()
        assert seen(client)["auth"] == "Basic Ym9iOmh1bnRlcjIy"  # the default entry of the new file
    second.write_text("machine api.example.com login bob password hunter22\n")  # another host only
    with Client(api) as client:
        assert seen(client)["auth"] is None


def test_async_proxies_and_trust_env(servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    api, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)

    async def main() -> tuple[str, str]:
        async with AsyncClient(api) as through, AsyncClient(api, trust_env=False) as direct:
            one = await through.get("/x").capture("seen", "$")({})
            two = await direct.get("/x").capture("seen", "$")({})
        return one["seen"]["via"], two["seen"]["via"]

    assert asyncio.run(main()) == ("proxy", "direct")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert asyncio.run(main()) == ("direct", "direct")


@pytest.mark.parametrize("proxy", ["ftp://127.0.0.1:1", "socks5://127.0.0.1:1"])
def test_a_proxy_the_transport_cannot_use_is_a_transport_error(
    servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    api, _ = servers
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with Client(api) as client, pytest.raises(TransportError):
        seen(client)

    async def main() -> None:
        async with AsyncClient(api) as client:
            with pytest.raises(TransportError, match="trust_env=False"):
                await client.get("/x")({})
        async with AsyncClient(api, trust_env=False) as client:  # ignored: sent directly
            assert (await client.get("/x").capture("via", "$.via")({})) == {"via": "direct"}

    asyncio.run(main())
