"""Hostile bodies cost bounded work: gzip bombs, huge bodies, max_body; against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable

import pytest

from service_flow import Flow
from service_flow.exceptions import ConfigurationError
from service_flow.http import (
    AsyncClient,
    AsyncPoll,
    BodyTooLarge,
    Client,
    JsonPath,
    Poll,
    PollTimeout,
    Request,
    ResponseError,
    RetryableHTTPError,
    Status,
    TransportError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

GIB = 1 << 30
MIB = 1 << 20


def gzip_bomb(size: int, chunk: int = MIB) -> bytes:
    """``size`` zero bytes, gzipped (about 1 MB per GB), built without compressing them all.

    After a full flush the compressor forgets what came before, so every further chunk
    of zeros compresses to the same bytes.  The trailer's CRC is left wrong: a reader
    that gets that far has already lost.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(chunk)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    end = compressor.flush()[:-8]
    return first + piece * (size // chunk - 1) + end + struct.pack("<II", 0, size & 0xFFFFFFFF)


BOMB = gzip_bomb(4 * GIB)  # 4 GB of zeros in about 4 MB
MISSING_FROM: set[tuple[str, int]] = set()  # the client addresses /missing was asked from


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        path = self.path
        if path.startswith("/bomb/"):  # /bomb/<status>[/chunked]
            self._send(int(path.split("/")[2]), BOMB, {"Content-Encoding": "gzip"}, chunked=path.endswith("chunked"))
        elif path == "/declared-huge":
            # Says 1 GB, sends a little, then stalls: reading it would wait, not refuse.
            self.send_response(200)
            self.send_header("Content-Length", str(GIB))
            self.end_headers()
            self.wfile.write(b'{"a": 1' + b" " * 10)
            self.wfile.flush()
            time.sleep(3)
        elif path.startswith("/sized/"):  # /sized/<n>: n bytes of JSON, chunked
            size = int(path.split("/")[2])
            self._send(200, b'"' + b"x" * (size - 2) + b'"', {"Content-Type": "application/json"}, chunked=True)
        elif path.startswith("/encoded/"):
            body = json.dumps({"data": {"id": 7}, "pad": "y" * 5000}).encode()
            encoding = path.split("/")[2]
            if encoding == "gzip":
                data = gzip.compress(body) + gzip.compress(b"")  # two members, as some servers send
            elif encoding == "deflate":
                data = zlib.compress(body)
            else:  # deflate sent raw, without the zlib header
                raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
                data, encoding = raw.compress(body) + raw.flush(), "deflate"
            self._send(200, data, {"Content-Encoding": encoding, "Content-Type": "application/json"})
        elif path == "/trailing-garbage":  # padding after the gzip member, as some servers send
            data = gzip.compress(json.dumps({"data": {"id": 7}}).encode()) + b"\n\x00\x00 padding"
            self._send(200, data, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
        elif path.startswith("/truncated/"):  # /truncated/<gzip|deflate>: a compressed body cut short
            encoding = path.split("/")[2]
            whole = json.dumps({"data": {"id": 7}, "pad": "y" * 5000}).encode()
            data = gzip.compress(whole) if encoding == "gzip" else zlib.compress(whole)
            self._send(200, data[: len(data) // 2], {"Content-Encoding": encoding, "Content-Type": "application/json"})
        elif path.startswith("/redirect-bomb"):
            self._send(302, BOMB, {"Content-Encoding": "gzip", "Location": "/encoded/gzip"}, chunked=True)
        elif path == "/pending":
            self._send(200, json.dumps({"status": "PENDING", "pad": "z" * 3000}).encode(), {})
        else:
            MISSING_FROM.add(self.client_address)
            pad = b" " * (20000 if path == "/missing-page" else 0)  # an HTML error page's size
            self._send(404, b'{"error": "no such thing"}' + pad, {"Content-Type": "application/json"})

    def _send(self, status: int, data: bytes, headers: dict[str, str], *, chunked: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if not chunked:
                self.wfile.write(data)
                return
            for start in range(0, len(data), 65536):
                piece = data[start : start + 65536]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client stopped reading: that is the point

    def log_message(self, *args: Any) -> None:
        pass


class Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = Quiet(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def bounded(call: Callable[[], object]) -> tuple[BaseException, int, float]:
    """Run ``call`` (which must raise): the error, the peak of memory allocated, the CPU seconds."""
    tracemalloc.start()
    cpu = time.process_time()
    try:
        call()
    except Exception as error:
        caught: BaseException = error
    else:
        pytest.fail("no error raised")
    finally:
        spent = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return caught, peak, spent


# Inflating the 4 GB bomb costs seconds of CPU and gigabytes (or, streamed, still seconds);
# reading a bounded prefix costs milliseconds and a few megabytes.
MEMORY_BOUND = 32 * MIB
CPU_BOUND = 1.5


@pytest.mark.parametrize("route", ["/bomb/500", "/bomb/500/chunked", "/bomb/404"])
def test_an_error_excerpt_of_a_gzip_bomb_reads_a_bounded_prefix(base: str, route: str) -> None:
    client = Client(base)
    error, peak, cpu = bounded(lambda: client.get(route)({}))
    assert isinstance(error, (RetryableHTTPError, ResponseError))
    assert error.response is not None
    assert error.response.status_code == int(route.split("/")[2])
    assert "binary content" in error.response.excerpt  # zeros are not text
    assert peak < MEMORY_BOUND
    assert cpu < CPU_BOUND
    client.teardown()


@pytest.mark.parametrize("route", ["/bomb/200", "/bomb/200/chunked"])
def test_max_body_refuses_a_gzip_bomb_once_it_inflates_past_the_limit(base: str, route: str) -> None:
    client = Client(base, max_body=MIB)
    flow = Flow(client.get(route, name="fetch report"))
    error, peak, cpu = bounded(lambda: flow({}))
    assert isinstance(error, BodyTooLarge)
    assert error.limit == MIB
    assert f"max_body={MIB}" in str(error)
    assert f"GET {base}{route}" in str(error)
    assert "fetch report" in str(error)  # the step is named too
    assert error.status == 200
    assert peak < MEMORY_BOUND
    assert cpu < CPU_BOUND
    client.teardown()


@pytest.mark.parametrize("route", ["/bomb/503", "/bomb/500/chunked"])
def test_a_poll_of_an_error_status_with_a_gzip_bomb_costs_bounded_work(base: str, route: str) -> None:
    # A poll reads every body (its conditions may judge any status), but a status the
    # request does not accept is read within a bound when no max_body is set.
    client = Client(base)
    poll = Poll(client.get(route), until=Status(200), alarm=JsonPath("$.state") == "failed", max_attempts=2, interval=0)
    error, peak, cpu = bounded(lambda: poll({}))
    assert isinstance(error, PollTimeout), error
    assert peak < MEMORY_BOUND
    assert cpu < CPU_BOUND
    client.teardown()

    async def main() -> None:
        async with AsyncClient(base) as api:
            await AsyncPoll(api.get(route), until=Status(200), max_attempts=2, interval=0)({})

    error, peak, cpu = bounded(lambda: asyncio.run(main()))
    assert isinstance(error, PollTimeout), error
    assert peak < MEMORY_BOUND
    assert cpu < 2 * CPU_BOUND


def test_a_redirects_gzip_bomb_body_is_not_inflated(base: str) -> None:
    client = Client(base)
    tracemalloc.start()
    cpu = time.process_time()
    try:
        assert client.get("/redirect-bomb").capture("data", "$.data")({}) == {"data": {"id": 7}}
    finally:
        spent = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_BOUND
    assert spent < CPU_BOUND
    client.teardown()


def test_max_body_refuses_before_reading_when_content_length_says_so(base: str) -> None:
    client = Client(base, max_body=1000, timeout=(3, 10))
    with pytest.raises(BodyTooLarge, match="max_body=1000") as caught:
        client.get("/declared-huge")({})  # reading would stall for seconds, then break off
    assert caught.value.limit == 1000
    client.teardown()


def test_max_body_is_exact_and_counts_the_bytes_without_a_content_length(base: str) -> None:
    client = Client(base, max_body=5000)
    assert client.get("/sized/5000").capture("x", "$")({}) == {"x": "x" * 4998}
    with pytest.raises(BodyTooLarge):
        client.get("/sized/5001").capture("x", "$")({})
    # The request's own max_body wins over the client's, both ways.
    assert client.get("/sized/9000", max_body=9000).capture("x", "$")({}) == {"x": "x" * 8998}
    with pytest.raises(BodyTooLarge):
        client.get("/sized/2000", max_body=1999)({})
    assert client.get("/sized/9000", max_body=None).capture("x", "$")({}) == {"x": "x" * 8998}
    client.teardown()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_read_whole_and_counted_inflated(base: str, encoding: str) -> None:
    client = Client(base)
    assert client.get(f"/encoded/{encoding}").capture("data", "$.data")({}) == {"data": {"id": 7}}
    with pytest.raises(BodyTooLarge):  # about 5 kB inflated, much less on the wire
        client.get(f"/encoded/{encoding}", max_body=4000)({})
    client.teardown()


def test_garbage_after_a_whole_gzip_member_is_ignored_as_urllib3_does(base: str) -> None:
    client = Client(base)
    assert client.get("/trailing-garbage").capture("data", "$.data")({}) == {"data": {"id": 7}}
    client.teardown()

    async def main() -> None:
        async with AsyncClient(base) as api:
            assert await api.get("/trailing-garbage").capture("data", "$.data")({}) == {"data": {"id": 7}}

    asyncio.run(main())


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_truncated_compressed_body_is_a_transport_error_never_an_empty_success(base: str, encoding: str) -> None:
    # The wire delivered every byte Content-Length promised, but the compressed stream
    # stops halfway: the body is not the server's, so nothing may be captured from it.
    client = Client(base)
    with pytest.raises(TransportError, match="truncated") as raised:
        client.get(f"/truncated/{encoding}").capture("size", lambda response: len(response.content))({})
    assert not isinstance(raised.value, RetryableHTTPError)  # the same bytes come again
    client.teardown()

    async def main() -> None:
        async with AsyncClient(base) as api:
            with pytest.raises(TransportError, match="truncated"):
                await api.get(f"/truncated/{encoding}").capture("size", lambda response: len(response.content))({})

    asyncio.run(main())


@pytest.mark.parametrize("route", ["/missing", "/missing-page"])
def test_an_error_body_of_ordinary_size_leaves_its_connection_reusable(base: str, route: str) -> None:
    client = Client(base)
    MISSING_FROM.clear()
    for _ in range(5):
        with pytest.raises(ResponseError, match="no such thing"):
            client.get(route)({})
    assert len(MISSING_FROM) == 1  # every error body read to its end: the connection went back to the pool
    client.teardown()


def test_a_poll_refuses_a_body_past_max_body(base: str) -> None:
    client = Client(base, max_body=1000)
    poll = Poll(client.get("/pending"), until=JsonPath("$.status") == "DONE", max_attempts=3, interval=0)
    with pytest.raises(BodyTooLarge, match="max_body=1000"):
        poll({})
    client.teardown()


@pytest.mark.parametrize("bad", [0, -1, True, False, 1.5, "1000", float("nan"), float("inf")])
def test_max_body_takes_a_positive_whole_number_or_none(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_body="):
        Client(max_body=bad)
    with pytest.raises(ConfigurationError, match="max_body="):
        AsyncClient(max_body=bad)
    with pytest.raises(ConfigurationError, match="max_body="):
        Request.get("http://127.0.0.1:9/x", max_body=bad)
    assert Client(max_body=None).max_body is None


# -- async ------------------------------------------------------------------------------


def test_async_error_excerpt_of_a_gzip_bomb_is_bounded(base: str) -> None:
    async def main() -> None:
        async with AsyncClient(base) as client:
            await client.get("/bomb/503")({})

    error, peak, cpu = bounded(lambda: asyncio.run(main()))
    assert isinstance(error, RetryableHTTPError)
    assert error.response is not None
    assert "binary content" in error.response.excerpt
    assert peak < MEMORY_BOUND
    assert cpu < CPU_BOUND


def test_async_a_redirects_gzip_bomb_body_is_not_inflated(base: str) -> None:
    async def main() -> dict[str, Any]:
        async with AsyncClient(base) as client:
            return await client.get("/redirect-bomb").capture("data", "$.data")({})  # type: ignore[no-any-return]

    tracemalloc.start()
    cpu = time.process_time()
    try:
        assert asyncio.run(main()) == {"data": {"id": 7}}
    finally:
        spent = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_BOUND
    assert spent < CPU_BOUND


def test_async_max_body_refuses_bombs_large_bodies_and_polls(base: str) -> None:
    async def main() -> None:
        async with AsyncClient(base, max_body=MIB) as client:
            with pytest.raises(BodyTooLarge, match=f"max_body={MIB}"):
                await client.get("/bomb/200/chunked")({})
            with pytest.raises(BodyTooLarge):
                await client.get("/declared-huge", timeout=(3, 10))({})
            assert await client.get("/sized/5000", max_body=5000).capture("x", "$")({}) == {"x": "x" * 4998}
            with pytest.raises(BodyTooLarge):
                await client.get("/sized/5001", max_body=5000)({})
            assert await client.get("/encoded/gzip").capture("d", "$.data")({}) == {"d": {"id": 7}}
            poll = AsyncPoll(
                client.get("/pending", max_body=1000), until=JsonPath("$.status") == "DONE", max_attempts=2, interval=0
            )
            with pytest.raises(BodyTooLarge):
                await poll({})

    tracemalloc.start()
    try:
        asyncio.run(main())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND


def _stalling_server() -> tuple[str, socket.socket]:
    """A raw server: ``/slow`` sends its headers, waits, then its 100 kB body; ``/ok`` a small JSON body.

    Connections are kept alive, so a client that gave up on a body and put its
    connection back in the pool would send its next request on it mid-body.
    """
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    try:
                        data = conn.recv(65536)
                    except OSError:  # the client closed the connection it gave up on
                        return
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                try:
                    if head.split(b" ")[1] == b"/slow":
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                        time.sleep(0.5)
                        conn.sendall(b"x" * 100000)
                    else:
                        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"a": 1}')
                except OSError:
                    return

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener


def test_a_body_given_up_on_never_leaves_its_connection_in_the_pool() -> None:
    url, listener = _stalling_server()
    try:
        client = Client(url, max_body=1000)
        with pytest.raises(BodyTooLarge):  # Content-Length says so: nothing is read
            client.get("/slow")({})
        # The same client's next request gets a fresh connection, not one mid-body.
        assert client.get("/ok").capture("a", "$.a")({}) == {"a": 1}
        client.teardown()
    finally:
        listener.close()
