"""Keeping secrets out of log lines and error messages.

A *sensitive name* is a header (``Authorization``, ``Cookie``, ``X-Api-Key``...) or a
query, form or JSON field (``api_key``, ``token``, ``password``, ``client_secret``...).
Their values become ``***`` in everything we log or put in an error; the values
themselves are also scrubbed from response excerpts, where a server may echo them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MASK: Final = "***"
_WHITESPACE: Final = frozenset(b"\t\n\r")
EXCERPT_CHARS: Final = 200

_SENSITIVE_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-access-token",
        "x-csrf-token",
    }
)
# Field names are compared lower-cased with "-" read as "_"; any name containing one of
# these words is sensitive (``access_token``, ``new_password``, ``client_secret``).
_SENSITIVE_WORDS: Final = ("token", "password", "passwd", "secret", "api_key", "apikey", "credential", "session")
_KEY_VALUE = re.compile(
    r"""(?ix)
    (?P<key>["']?[\w-]*(?:token|password|passwd|secret|api[_-]?key|credential|session)[\w-]*["']?)
    (?P<sep>\s*[:=]\s*)
    (?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s&,;}"']+)
    """
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[\w\-.~+/=]+")


def is_sensitive_field(name: str) -> bool:
    """Whether a query, form or JSON field called ``name`` holds a secret."""
    lowered = name.lower().replace("-", "_")
    return any(word in lowered for word in _SENSITIVE_WORDS)


def is_sensitive_header(name: str) -> bool:
    """Whether a header called ``name`` holds a secret."""
    lowered = name.lower()
    return lowered in _SENSITIVE_HEADERS or is_sensitive_field(lowered)


def headers(values: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``values`` with sensitive headers masked."""
    return {name: MASK if is_sensitive_header(name) else value for name, value in values.items()}


def url(text: str) -> str:
    """``text`` with its user info and sensitive query values masked."""
    if "?" not in text and "@" not in text:
        return text  # the common case costs one scan
    try:
        parts = urlsplit(text)
    except ValueError:
        return scrub(text, ())
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_sensitive_field(key) for key, _ in pairs):
            query = urlencode([(key, MASK if is_sensitive_field(key) else value) for key, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_in(fields: Any) -> list[str]:
    """The values of sensitive fields in ``fields`` (a mapping, pairs, or nested JSON)."""
    found: list[str] = []
    _collect(fields, found, depth=0)
    return found


def _collect(value: Any, found: list[str], depth: int) -> None:
    if depth > 8:  # noqa: PLR2004 - deep enough for any request body; stops cycles
        return
    items: Iterable[Any]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        if all(isinstance(item, tuple) and len(item) == 2 for item in value):  # noqa: PLR2004 - pairs
            items = value
        else:
            for item in value:
                _collect(item, found, depth + 1)
            return
    else:
        return
    for key, item in items:
        if isinstance(key, str) and is_sensitive_field(key) and isinstance(item, (str, bytes, int)):
            found.append(item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item))
        else:
            _collect(item, found, depth + 1)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each known secret value, ``key=value`` secret and bearer token masked."""
    for secret in secrets:
        if len(secret) >= 4:  # noqa: PLR2004 - masking "1" everywhere would garble the text
            text = text.replace(secret, MASK)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)


def excerpt(content: bytes | None, secrets: Iterable[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, redacted excerpt of a body; never fails on binary or truncated bodies."""
    if not content:
        return ""
    head = content[: limit * 4]  # a UTF-8 character is at most 4 bytes
    controls = sum(1 for byte in head if byte < 0x20 and byte not in _WHITESPACE)  # noqa: PLR2004
    if controls > len(head) // 20:
        return f"<{len(content)} bytes of binary content>"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        # Cut inside a character: keep what came before; otherwise not UTF-8: Latin-1 reads anything.
        text = head[: error.start].decode("utf-8") if error.start >= len(head) - 3 else head.decode("latin-1")
    text = scrub(text, secrets)
    text = " ".join(text.split())
    if len(text) > limit or len(content) > len(head):
        text = text[:limit] + "…"
    return text
