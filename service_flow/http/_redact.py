"""Keeping secrets out of log lines and error messages.

A *sensitive name* is a header (``Authorization``, ``Cookie``, ``X-Api-Key``...) or a
query, form or JSON field (``api_key``, ``token``, ``password``, ``client_secret``, a
presigned URL's ``X-Amz-Signature``...).  Their values become ``***`` in everything we
log or put in an error; the values themselves are also scrubbed from response excerpts,
where a server may echo them.  `add_sensitive_names` adds an application's own names.
"""

from __future__ import annotations

import functools
import json
import logging
import pickle
import re
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from service_flow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["MASK", "add_sensitive_names"]

MASK: Final = "***"
_WHITESPACE: Final = frozenset(b"\t\n\r")
EXCERPT_CHARS: Final = 200
_SHORTEST_SECRET: Final = 4  # masking "1" everywhere would garble the text

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
        "ocp-apim-subscription-key",
        "x-amz-security-token",
        "x-goog-api-key",
    }
)
# Field names are compared lower-cased with "-" read as "_"; any name containing one of
# these words is sensitive (``access_token``, ``new_password``, ``client_secret``,
# ``X-Amz-Signature``).
_SENSITIVE_WORDS: Final = (
    "token",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "api_key",
    "apikey",
    "credential",
    "session",
    "signature",
    "access_key",
    "private_key",
    "subscription_key",
)
# Names sensitive only as a whole (``sig`` is, ``design`` is not): signed URLs'
# parameters and Google's ``?key=``.
_EXACT_NAMES: Final = frozenset(
    {"sig", "key", "awsaccesskeyid", "x_goog_credential", "authorization", "cookie", "set_cookie"}
)

# Authorization schemes: after ``Authorization:``, the word after the scheme is masked too.
_AUTH_SCHEMES: Final = ("bearer", "basic", "token", "digest", "negotiate", "apikey", "api-key", "sso-key", "mac")

_lock = threading.Lock()
_added: frozenset[str] = frozenset()  # the application's names (add_sensitive_names)


def _normal(name: str) -> str:
    return name.lower().replace("-", "_")


def add_sensitive_names(*names: str) -> None:
    """Treat headers and query, form or JSON fields called ``names`` as secrets, everywhere.

    Names compare case-insensitively, ``-`` and ``_`` alike, as whole names::

        from service_flow.http import add_sensitive_names

        add_sensitive_names("X-Tenant-Key", "pin")

    Their values are then masked in URLs, headers, log events, error messages and
    excerpts, and the headers are dropped on a redirect to another origin.  The names
    hold for the whole process (call it once, at start-up).
    """
    global _added, _KEY_VALUE  # noqa: PLW0603 - a process-wide registry, replaced whole
    for name in names:
        if not isinstance(name, str) or not name.strip():
            msg = f"add_sensitive_names() takes header or field names (non-empty str), got {name!r}"
            raise ConfigurationError(msg)
    with _lock:
        _added = _added | {_normal(name.strip()) for name in names}
        _KEY_VALUE = _key_value_pattern()
        is_sensitive_field.cache_clear()
        is_sensitive_header.cache_clear()


@functools.lru_cache(maxsize=1024)
def is_sensitive_field(name: str) -> bool:
    """Whether a query, form or JSON field called ``name`` holds a secret."""
    lowered = _normal(name)
    return lowered in _EXACT_NAMES or lowered in _added or any(word in lowered for word in _SENSITIVE_WORDS)


@functools.lru_cache(maxsize=1024)
def is_sensitive_header(name: str) -> bool:
    """Whether a header called ``name`` holds a secret."""
    return name.lower() in _SENSITIVE_HEADERS or is_sensitive_field(name)


def headers(values: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``values`` with sensitive headers masked, and secrets in the others' URLs and pairs.

    ``Location: https://bucket/o?X-Amz-Signature=...`` keeps its URL, the signature masked.  The
    names keep the case the server sent (httpx's headers hold it in ``raw``), as requests' do.
    """
    raw = getattr(values, "raw", None)
    pairs = (
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
        if isinstance(raw, list)
        else values.items()
    )
    masked: dict[str, str] = {}
    for name, value in pairs:
        shown = MASK if is_sensitive_header(name) else scrub(value, ()) if "=" in value or "@" in value else value
        masked[name] = f"{masked[name]}, {shown}" if name in masked else shown  # repeated: joined, as requests does
    return masked


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


def _key_value_pattern() -> re.Pattern[str]:
    words = "|".join(re.escape(word).replace("_", "[_-]?") for word in _SENSITIVE_WORDS)
    exact = "|".join(re.escape(name).replace("_", "[_-]") for name in sorted(_EXACT_NAMES | _added))
    schemes = "|".join(_AUTH_SCHEMES)  # "Authorization: Bearer <token>": the token is the secret
    return re.compile(
        rf"""(?ix)
        (?P<key>["']?(?:[\w-]*(?:{words})[\w-]*|(?<![\w-])(?:{exact}))["']?)
        (?P<sep>\s*[:=]\s*)
        (?P<value>"(?:[^"\\]|\\.)*(?:"|\Z)|'[^']*(?:'|\Z)|(?:(?:{schemes})\s+)?[^\s&,;}}"']+)
        """
    )


_KEY_VALUE = _key_value_pattern()
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[\w\-.~+/=]+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]+@")


def _forms(secret: str) -> list[str]:
    """``secret`` as it may appear in a text: itself, escaped by repr, URL-encoded."""
    forms = [secret]
    escaped = repr(secret)[1:-1]
    if escaped != secret:
        forms.append(escaped)
    encoded = quote(secret, safe="")
    if encoded != secret:
        forms.append(encoded)
    in_json = json.dumps(secret)[1:-1]  # "p\u00e4ss" as a server's JSON writes it
    if in_json not in forms:
        forms.append(in_json)
    return forms


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with known secret values, URLs' user info, ``key=value`` secrets and tokens masked."""
    for secret in secrets:
        if len(secret) >= _SHORTEST_SECRET:
            for form in _forms(secret):
                text = text.replace(form, MASK)
    text = _USERINFO.sub(lambda m: f"{m[1]}{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)


def excerpt(content: bytes | None, secrets: Iterable[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, redacted excerpt of a body; never fails on binary or truncated bodies.

    The secrets are scrubbed before the excerpt is cut, and a cut body loses its last
    characters, where a secret cut in two could hide from the scrubbing.
    """
    if not content:
        return ""
    secrets = list(secrets)
    margin = max((len(secret) * 3 for secret in secrets), default=0) + 64
    head = content[: limit * 4 + margin]  # a UTF-8 character is at most 4 bytes
    controls = sum(1 for byte in head if byte < 0x20 and byte not in _WHITESPACE)  # noqa: PLR2004
    if controls > len(head) // 20:
        return f"<{len(content)} bytes of binary content>"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        # Cut inside a character: keep what came before; otherwise not UTF-8: Latin-1 reads anything.
        text = head[: error.start].decode("utf-8") if error.start >= len(head) - 3 else head.decode("latin-1")
    cut = len(content) > len(head)
    text = scrub(text, secrets)
    if cut:
        text = text[:-margin]  # what may be the first part of a secret the cut split
    text = " ".join(text.split())
    if len(text) > limit or cut:
        text = text[:limit] + "…"
    return text


# -- the transport's own loggers ---------------------------------------------------------

#: The secrets of the request being sent in this thread or task, for the log filter.
sending: ContextVar[tuple[str, ...]] = ContextVar("service_flow_http_sending", default=())

TRANSPORT_LOGGERS: Final = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


class MaskingFilter(logging.Filter):
    """Masks URLs and known secrets in the records of urllib3's, requests' and httpx's loggers.

    Installed on those loggers (a logger's filter sees every record it creates, before
    any handler), so an application's handlers only ever get the masked text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record``'s message with secrets masked; never drops a record."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is logging's problem
            return True
        masked = scrub(message, sending.get())
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER: Final = MaskingFilter()


def install_log_filter() -> None:
    """Put the masking filter on the transport's loggers (once; later calls do nothing)."""
    for name in TRANSPORT_LOGGERS:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)


# -- exception chains ----------------------------------------------------------------------

_CHAIN_DEPTH: Final = 12
_LIVE_ATTRIBUTES: Final = frozenset({"request", "response", "_request", "_response"})


def masked_chain(error: BaseException, secrets: Iterable[str], urls: Mapping[str, str]) -> BaseException:
    """A copy of ``error`` and of its ``__cause__``/``__context__`` chain with secrets masked.

    Each copy has the type of its original (``except requests.ConnectionError`` and
    ``Poll(ignore=...)`` still match), a masked message, masked plain attributes and no
    traceback; the requests, responses, pools and other objects the originals hold
    (their headers hold credentials) are not kept.  ``urls`` maps raw URLs to their
    shown forms.
    """
    return _ChainMasker(list(secrets), urls).copy(error, 0)


class _ChainMasker:
    __slots__ = ("copies", "secrets", "urls")

    def __init__(self, secrets: list[str], urls: Mapping[str, str]) -> None:
        self.secrets = secrets
        self.urls = urls
        self.copies: dict[int, BaseException] = {}

    def mask(self, text: str) -> str:
        for raw, shown in self.urls.items():
            text = text.replace(raw, shown)
        return scrub(text, self.secrets)

    def attribute(self, name: str, value: Any, depth: int) -> Any:
        # Plain data is kept (masked); requests, responses, pools and the like are not.
        if name in _LIVE_ATTRIBUTES or value is None:
            return None
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, BaseException) and depth < _CHAIN_DEPTH:
            return self.copy(value, depth + 1)
        return None

    def copy(self, original: BaseException, depth: int) -> BaseException:
        known = self.copies.get(id(original))
        if known is not None:
            return known
        kind = type(original)
        try:
            text = self.mask(str(original))
        except Exception:  # noqa: BLE001 - an exception whose str() fails still gets a copy
            text = "<no message>"
        twin: BaseException
        try:
            twin = kind.__new__(kind)
            twin.args = (text,)
            self.copies[id(original)] = twin
            for name, value in vars(original).items():
                setattr(twin, name, self.attribute(name, value, depth))
            str(twin)
            pickle.dumps(twin)  # it travels to process pools and dead-letter stores as its original would
        except Exception:  # noqa: BLE001 - a type we cannot copy becomes a plain one naming it
            twin = RuntimeError(f"{kind.__module__}.{kind.__qualname__}: {text}")
        self.copies[id(original)] = twin
        twin.__suppress_context__ = original.__suppress_context__
        if depth < _CHAIN_DEPTH:
            cause, context = original.__cause__, original.__context__
            twin.__cause__ = None if cause is None else self.copy(cause, depth + 1)
            twin.__context__ = None if context is None else self.copy(context, depth + 1)
        return twin
