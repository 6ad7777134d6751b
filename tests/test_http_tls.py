"""TLS verification does what the user said: against a real HTTPS server on 127.0.0.1 (trustme's CA)."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme

from service_flow.exceptions import ConfigurationError
from service_flow.http import AsyncClient, Client, Request, TransportError

if TYPE_CHECKING:
    from collections.abc import Iterator


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        data = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # refused handshakes are the point of some tests


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """``(https base URL, our CA's path, another CA's path)``."""
    folder = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    ca_path, other_path = folder / "ca.pem", folder / "other.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    other.cert_pem.write_to_path(str(other_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = Quiet(("127.0.0.1", 0), Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(ca_path), str(other_path)
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def other_bundles(tls: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment names another CA, as on many machines: it must not override the user."""
    _, _, other = tls
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, other)


def ok(client: Client, **options: Any) -> dict[str, Any]:
    return client.get("/hello", **options).capture("ok", "$.ok")({})


# -- sync -------------------------------------------------------------------------------


def test_verify_with_the_ca_path_passes_whatever_the_environment_says(tls: tuple[str, str, str]) -> None:
    url, ca, _ = tls
    with Client(url, verify=ca) as client:
        assert ok(client) == {"ok": True}
    with Client(url, verify=Path(ca)) as client:
        assert ok(client) == {"ok": True}


def test_default_verify_fails_with_a_library_error(tls: tuple[str, str, str]) -> None:
    url, _, _ = tls
    with Client(url) as client, pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        ok(client)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_passes_whatever_the_environment_says(tls: tuple[str, str, str]) -> None:
    url, _, _ = tls
    with Client(url, verify=False) as client:
        assert ok(client) == {"ok": True}


def test_verify_true_uses_the_environments_bundle_unless_trust_env_is_off(
    tls: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca, _ = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    with Client(url) as client:
        assert ok(client) == {"ok": True}
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", ca)
    with Client(url) as client:
        assert ok(client) == {"ok": True}
    with Client(url, trust_env=False) as client, pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        ok(client)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_per_request_overrides_the_client(tls: tuple[str, str, str]) -> None:
    url, ca, other = tls
    with Client(url) as client:
        assert ok(client, verify=ca) == {"ok": True}
        assert ok(client, verify=False) == {"ok": True}
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            ok(client)  # the client's own setting is untouched
    with Client(url, verify=False) as client:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            ok(client, verify=other)
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            ok(client, verify=True)
        assert ok(client, verify=ca) == {"ok": True}
        assert ok(client) == {"ok": True}  # the client's False is untouched


@pytest.mark.parametrize("bad", [None, "", 0, 1, 1.5, "no/such/ca.pem", b"ca.pem", ["ca.pem"]])
def test_verify_takes_true_false_or_an_existing_path_only(bad: Any, tls: tuple[str, str, str]) -> None:
    url, _, _ = tls
    with pytest.raises(ConfigurationError, match=r"verify="):
        Client(url, verify=bad)
    with pytest.raises(ConfigurationError, match=r"verify="):
        AsyncClient(url, verify=bad)
    with pytest.raises(ConfigurationError, match=r"verify="):
        Request.get("/x", client=Client(url), verify=bad)


def test_trust_env_takes_a_bool() -> None:
    with pytest.raises(ConfigurationError, match=r"trust_env="):
        Client(trust_env=None)  # type: ignore[arg-type]


def test_a_ca_directory_is_a_path_too(tls: tuple[str, str, str], tmp_path: Path) -> None:
    url, _, _ = tls
    client = Client(url, verify=tmp_path)  # an empty directory trusts nothing
    with client, pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        ok(client)


# -- async ------------------------------------------------------------------------------


async def aok(client: AsyncClient, **options: Any) -> dict[str, Any]:
    return await client.get("/hello", **options).capture("ok", "$.ok")({})  # type: ignore[no-any-return]


def test_async_verify_with_the_ca_path_false_and_default(tls: tuple[str, str, str]) -> None:
    url, ca, _ = tls

    async def main() -> None:
        async with AsyncClient(url, verify=ca) as client:
            assert await aok(client) == {"ok": True}
        async with AsyncClient(url, verify=False) as client:
            assert await aok(client) == {"ok": True}
        async with AsyncClient(url) as client:
            with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
                await aok(client)

    asyncio.run(main())


def test_async_verify_per_request(tls: tuple[str, str, str]) -> None:
    url, ca, other = tls

    async def main() -> None:
        async with AsyncClient(url) as client:
            assert await aok(client, verify=ca) == {"ok": True}
            assert await aok(client, verify=False) == {"ok": True}
            with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
                await aok(client)
        async with AsyncClient(url, verify=False) as client:
            with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
                await aok(client, verify=other)
            assert await aok(client) == {"ok": True}

    asyncio.run(main())


@pytest.mark.parametrize("content", ["", "not a certificate\n"])
def test_a_file_that_is_not_a_ca_bundle_is_refused_at_construction(
    tls: tuple[str, str, str], tmp_path: Path, content: str
) -> None:
    url, _, _ = tls
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(content)
    with pytest.raises(ConfigurationError, match=r"^Client\(verify=\).*not a CA bundle"):
        Client(url, verify=garbage)
    with pytest.raises(ConfigurationError, match=r"^AsyncClient\(verify=\).*not a CA bundle"):
        AsyncClient(url, verify=str(garbage))
    with pytest.raises(ConfigurationError, match=r"verify=\).*not a CA bundle"):
        Request.get("/x", client=Client(url), verify=garbage)
    with pytest.raises(ConfigurationError, match=r"verify=\).*not a CA bundle"):
        Client(url).get("/x").with_options(verify=garbage)


def test_async_a_ca_bundle_gone_or_unreadable_when_sending_is_a_transport_error(
    tls: tuple[str, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca, _ = tls
    copy = tmp_path / "ca.pem"
    copy.write_bytes(Path(ca).read_bytes())
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")

    async def main() -> None:
        async with AsyncClient(url, verify=copy) as client:
            copy.unlink()  # removed between construction and the first request
            with pytest.raises(TransportError):
                await aok(client)
        monkeypatch.setenv("SSL_CERT_FILE", str(garbage))  # httpx loads it when its client opens
        async with AsyncClient(url) as client:
            with pytest.raises(TransportError):
                await aok(client)

    asyncio.run(main())
