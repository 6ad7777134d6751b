"""Reading response bodies with bounds: a whole body up to ``max_body``, or a prefix for an excerpt.

Responses are sent for streaming (``stream=True`` in requests, ``send(stream=True)`` in
httpx), so nothing is read before we decide how much we want:

* a body the request will use (a success, a poll) is read whole, and refused as soon
  as it grows past ``max_body`` (before reading at all when ``Content-Length`` says so);
* a body kept only for an error's excerpt is read up to `PREFIX_BYTES`; a little more
  (`DRAIN_BYTES`, as it comes on the wire) is read and dropped so that a body ending
  there leaves its connection in the pool; then the response is closed.

``gzip`` and ``deflate`` are inflated here, never more than the room left, so a small
compressed body that inflates to gigabytes costs no more than the bytes we keep.  Other
encodings (``br``, ``zstd``) are left to the transport's decoder, read in small pieces.
Whatever is read becomes the response's ``content``, so ``json()`` and ``text`` work.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

PREFIX_BYTES: Final = 8192
"""How much of a body an error keeps to build its excerpt from."""

DRAIN_BYTES: Final = 65536
"""How much more of an error's body is read (and dropped) so its connection can be reused."""

POLLED_BYTES: Final = 1 << 20
"""How much of a polled body is read when its status is not one the request accepts and no
``max_body`` is set: conditions may judge it, a bomb behind a 503 costs no more than this."""

CHUNK_BYTES: Final = 16384
"""How much is read from the transport at a time."""


class _Inflate:
    """A ``gzip`` or ``deflate`` decoder that never produces more than it is asked for."""

    __slots__ = ("_gzip", "_member_done", "_obj", "_started")

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding != "deflate"
        self._obj = self._new()
        self._started = False
        self._member_done = False  # a whole gzip member was inflated: what follows may be garbage

    def _new(self, raw: bool = False) -> Any:
        if self._gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    def __call__(self, data: bytes, room: int) -> bytes:
        """Up to ``room`` bytes inflated from ``data`` (more input may remain unread)."""
        out = []
        size = 0
        while data and size < room:
            try:
                piece = self._obj.decompress(data, room - size)
            except zlib.error:
                if self._member_done:
                    break  # trailing garbage after a gzip member: ignored, as urllib3 and curl do
                if self._gzip or self._started:
                    raise
                # "deflate" sent raw, without the zlib header, as some servers do.
                self._obj = self._new(raw=True)
                piece = self._obj.decompress(data, room - size)
            self._started = True
            out.append(piece)
            size += len(piece)
            data = self._obj.unconsumed_tail
            if not data and self._obj.eof and self._obj.unused_data and self._gzip:
                data = self._obj.unused_data  # another gzip member follows (or garbage)
                self._obj = self._new()
                self._member_done = True
            elif not piece and not data:
                break
        return b"".join(out)

    def finish(self) -> None:
        """Raise `zlib.error` when the body ended inside its compressed stream (truncated)."""
        if self._started and not self._obj.eof and not self._member_done:
            msg = "the compressed body ended before its compressed stream did (truncated)"
            raise zlib.error(msg)


def inflater(headers: Any) -> _Inflate | None:
    """Our decoder for the response's ``Content-Encoding``; ``None`` when the transport should decode."""
    encoding = (headers.get("Content-Encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflate(encoding)
    return None


def declared_length(headers: Any) -> int | None:
    """``Content-Length`` as a number, ``None`` when absent or unreadable."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


class Collector:
    """Bytes gathered up to a limit: ``add`` says ``False`` once the limit is passed."""

    __slots__ = ("chunks", "decode", "limit", "size")

    def __init__(self, limit: int | None, decode: _Inflate | None) -> None:
        self.limit = limit
        self.decode = decode
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> bool:
        """Keep ``data`` (inflated if need be); ``False`` when the body grew past the limit."""
        if self.decode is not None:
            room = (1 << 62) if self.limit is None else self.limit - self.size + 1
            data = self.decode(data, room)
        self.chunks.append(data)
        self.size += len(data)
        return self.limit is None or self.size <= self.limit

    def content(self, keep: int | None = None) -> bytes:
        """What was gathered (its first ``keep`` bytes when given)."""
        body = b"".join(self.chunks)
        return body if keep is None else body[:keep]


# -- requests ---------------------------------------------------------------------------


def _requests_chunks(response: Any, decoded: bool) -> Iterator[bytes]:
    raw = response.raw
    stream = getattr(raw, "stream", None)
    if stream is None:  # not urllib3 (a custom adapter): take what it gives
        yield response.content
        return
    yield from stream(CHUNK_BYTES, decode_content=decoded)


def _loaded(response: Any) -> bytes | None:
    content = getattr(response, "_content", False)
    return content if isinstance(content, bytes) else None


def _keep(response: Any, content: bytes) -> None:
    response._content = content  # noqa: SLF001 - what requests' own .content sets
    response._content_consumed = True  # noqa: SLF001


def _abandon(response: Any) -> None:
    """Close a requests response whose body was not read to its end, and its connection.

    requests' ``close()`` only releases the connection to the pool once the content is
    set, as we set it: one with the rest of a body still coming must not be reused.
    """
    close = getattr(response.raw, "close", None)
    if close is not None:
        close()
    response.close()


def read(response: Any, limit: int | None, *, head: bool = False) -> bool:
    """Read the body of a requests response whole; ``False`` (and a prefix kept) past ``limit``."""
    loaded = _loaded(response)
    if loaded is not None:
        return limit is None or len(loaded) <= limit
    if limit is not None and not head:
        length = declared_length(response.headers)
        if length is not None and length > limit:
            _keep(response, b"")
            _abandon(response)
            return False
    decode = inflater(response.headers)
    collected = Collector(limit, decode)
    for chunk in _requests_chunks(response, decoded=decode is None):
        if not collected.add(chunk):
            _keep(response, collected.content(PREFIX_BYTES))
            _abandon(response)
            return False
    if decode is not None:
        decode.finish()
    _keep(response, collected.content())
    return True


def _drain(chunks: Iterator[bytes]) -> bool:
    """Read on, without keeping, up to `DRAIN_BYTES`; whether the body ended there (its connection reusable)."""
    drained = 0
    for chunk in chunks:
        drained += len(chunk)
        if drained > DRAIN_BYTES:
            return False
    return True


def read_prefix(response: Any) -> bytes:
    """The first `PREFIX_BYTES` of a requests response's body (kept as its content); closes it."""
    loaded = _loaded(response)
    if loaded is not None:
        return loaded
    collected = Collector(PREFIX_BYTES, inflater(response.headers))
    ended = False
    with contextlib.suppress(Exception):  # a body that cannot be read must not hide the error
        chunks = _requests_chunks(response, decoded=collected.decode is None)
        for chunk in chunks:
            if not collected.add(chunk):
                ended = _drain(chunks)
                break
        else:
            ended = True
    content = collected.content(PREFIX_BYTES + 1)
    _keep(response, content)
    if ended:
        response.close()
    else:
        _abandon(response)
    return content


def content(response: Any) -> bytes:
    """The body read so far, reading a prefix of a requests response not read yet; never raises."""
    loaded = _loaded(response)
    if loaded is not None:
        return loaded
    if getattr(response, "_content", None) is False and hasattr(response, "raw"):
        return read_prefix(response)  # requests, not read yet
    try:
        body = response.content  # httpx: read before (or raises)
    except Exception:  # noqa: BLE001 - a body that cannot be read must not hide the error
        return b""
    return body if isinstance(body, bytes) else b""


# -- httpx ------------------------------------------------------------------------------


def _httpx_loaded(response: Any) -> bytes | None:
    return response.__dict__.get("_content")  # type: ignore[no-any-return]


async def _httpx_chunks(response: Any, decoded: bool) -> AsyncIterator[bytes]:
    source = response.aiter_bytes(CHUNK_BYTES) if decoded else response.aiter_raw(CHUNK_BYTES)
    async for chunk in source:
        yield chunk


async def aread(response: Any, limit: int | None, *, head: bool = False) -> bool:
    """Read the body of an httpx response whole; ``False`` (and a prefix kept) past ``limit``."""
    loaded = _httpx_loaded(response)
    if loaded is not None:
        return limit is None or len(loaded) <= limit
    if limit is not None and not head:
        length = declared_length(response.headers)
        if length is not None and length > limit:
            response._content = b""  # noqa: SLF001 - what httpx's own read() sets
            await response.aclose()
            return False
    decode = inflater(response.headers)
    collected = Collector(limit, decode)
    async for chunk in _httpx_chunks(response, decoded=decode is None):
        if not collected.add(chunk):
            response._content = collected.content(PREFIX_BYTES)  # noqa: SLF001
            await response.aclose()
            return False
    if decode is not None:
        decode.finish()
    response._content = collected.content()  # noqa: SLF001
    await response.aclose()
    return True


async def aread_prefix(response: Any) -> bytes:
    """The first `PREFIX_BYTES` of an httpx response's body (kept as its content); closes it."""
    loaded = _httpx_loaded(response)
    if loaded is not None:
        await response.aclose()
        return loaded
    collected = Collector(PREFIX_BYTES, inflater(response.headers))
    try:
        chunks = _httpx_chunks(response, decoded=collected.decode is None)
        async for chunk in chunks:
            if not collected.add(chunk):
                drained = 0
                async for rest in chunks:  # as _drain does
                    drained += len(rest)
                    if drained > DRAIN_BYTES:
                        break
                break
    except Exception:  # noqa: BLE001, S110 - a body that cannot be read must not hide the error
        pass
    body = collected.content(PREFIX_BYTES + 1)
    response._content = body  # noqa: SLF001
    await response.aclose()
    return body
