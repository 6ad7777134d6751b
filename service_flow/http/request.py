"""The request service: build a request from the context, send it, check and capture the response.

::

    api = Client("https://api.example.com")
    get_user = api.get("/users/{user_id}").capture("user", "$.data").check(status=200)
    flow = get_user >> api.post("/audit", json=lambda ctx: {"user": ctx["user"]["id"]})

A `Request` is built once; everything that does not depend on the context (the URL
template, static query strings and headers, compiled JSON paths, the status map) is
computed then.  The fluent methods (`Request.capture`, `Request.check`...) return a
*new* request, like ``>>`` returns a new flow.

Three parts, so that another transport (an async one) can reuse the first and the last:

* `Request.build` turns a context into an `Outgoing`, plain data;
* `Client.send` sends it with `requests` (the only place that knows `requests`);
* `Request.interpret` maps the status to an action, runs the checks and returns the
  captures, from any response with ``status_code``, ``headers``, ``content`` and ``json()``.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from jsonpath_ng import JSONPath

from service_flow.exceptions import ConfigurationError, FlowError, MissingContextKey
from service_flow.http import _body, _jsonpath, _redact
from service_flow.http._jsonpath import Expression, PathError
from service_flow.http.auth import check_auth
from service_flow.http.client import (
    READ_ERRORS,
    Client,
    Limit,
    Timeout,
    Verify,
    check_base_url,
    check_max_body,
    check_timeout,
    check_verify,
    forgetting,
    header_problem,
)
from service_flow.http.conditions import AllOf, Condition, ConditionSpec, Observed, as_condition
from service_flow.http.errors import (
    BodyTooLarge,
    CaptureFailed,
    CheckFailed,
    FatalHTTPError,
    HTTPStopped,
    RequestBuildError,
    ResponseError,
    ResponseInfo,
    RetriesExhausted,
    RetryableHTTPError,
)
from service_flow.http.status import IDEMPOTENT_METHODS, Action, StatusActions, parse_retry_after
from service_flow.service import Service

if TYPE_CHECKING:
    from collections.abc import Iterable

    from service_flow.http.auth import Auth
    from service_flow.http.errors import HTTPError

__all__ = ["Capture", "Outgoing", "Request"]


class _Nothing:
    __slots__ = ()

    def __reduce__(self) -> str:
        return "NOTHING"  # the one instance, also after pickling

    def __repr__(self) -> str:
        return "<nothing>"


NOTHING: Final = _Nothing()
"""Marks an option that was not given (``None`` can be a value)."""

Context = dict[str, Any]


class Outgoing:
    """A request ready to send: plain data, no transport attached.

    ``url`` includes the query string; ``json`` and ``data`` are ``None`` when there is
    no such body; ``headers`` do not include authentication (the sender adds it);
    ``verify`` is ``None`` for the client's; ``max_body`` is the largest body accepted.
    """

    __slots__ = (
        "allow_redirects",
        "data",
        "headers",
        "hidden",
        "idempotent",
        "json",
        "max_body",
        "method",
        "service",
        "shown",
        "timeout",
        "url",
        "verify",
    )

    def __init__(  # noqa: PLR0913 - one field each, set by Request.build
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        json: Any,
        data: Any,
        timeout: Timeout,
        *,
        allow_redirects: bool = True,
        idempotent: bool = True,
        service: str = "",
        verify: bool | str | None = None,
        max_body: int | None = None,
        shown: str | None = None,
        hidden: tuple[str, ...] = (),
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.json = json
        self.data = data
        self.timeout = timeout
        self.allow_redirects = allow_redirects
        self.idempotent = idempotent
        self.service = service
        self.verify = verify
        self.max_body = max_body
        self.shown = shown
        self.hidden = hidden

    def shown_url(self) -> str:
        """The URL as logs and errors show it: user info, secret parameters and placeholders masked."""
        return self.shown if self.shown is not None else _redact.url(self.url)

    def secrets(self, auth: Auth | None = None) -> list[str]:
        """Every secret value this request carries (for masking them in messages)."""
        found = [value for name, value in self.headers.items() if _redact.is_sensitive_header(name)]
        found += self.hidden
        if auth is not None:
            found += list(auth.headers().values())
            found += [v.split(" ", 1)[1] for v in auth.headers().values() if " " in v]
            more = getattr(auth, "secrets", None)  # BasicAuth's password, "user:password"
            if callable(more):
                found += [str(secret) for secret in more()]
        parts = urlsplit(self.url) if "@" in self.url else None
        if parts is not None and parts.password:
            found += [parts.password, f"{parts.username}:{parts.password}"]
        if "?" in self.url:
            query = self.url.split("?", 1)[1].split("#", 1)[0]
            found += [v for k, v in parse_qsl(query) if _redact.is_sensitive_field(k)]
        found += _redact.secrets_in(self.json)
        found += _redact.secrets_in(self.data)
        return sorted(set(found), key=len, reverse=True)  # longest first: no partial masks

    def __repr__(self) -> str:
        return f"<Outgoing {self.method} {self.shown_url()}>"


# -- JSON paths -------------------------------------------------------------------------

PathFinder = Callable[[Any], list[Any]]


def compile_json_path(expression: Expression) -> PathFinder:
    """A function giving every match of ``expression`` in a JSON document, as a list.

    ``expression`` is a string starting with ``$`` or an expression compiled by
    jsonpath-ng.  Plain paths (``$.data.items[0]['id']``) are walked directly, the rest
    goes to jsonpath-ng; a malformed expression raises `ConfigurationError` now, not
    per call.  The function raises `PathError` when jsonpath-ng fails on a document.
    """
    if isinstance(expression, str) and not expression.startswith("$"):
        msg = f"a JSON path starts with '$', got {expression!r}"
        raise ConfigurationError(msg)
    return _jsonpath.finder(expression)


def _is_path(spec: object) -> bool:
    return isinstance(spec, (str, JSONPath))


# -- captures ---------------------------------------------------------------------------


class Capture:
    """Where a captured value comes from: a JSON path, a header, or a function of the response.

    ``Capture.json("$.data.id")`` gives the first match (``all=True``: a list of every
    match); ``Capture.header("ETag")``; ``Capture.using(lambda response: ...)``.  A path
    is a string or an expression compiled by jsonpath-ng.  Without a ``default``,
    finding nothing raises `CaptureFailed`; a body that is not JSON finds nothing, and a
    path jsonpath-ng cannot evaluate on the body (a filter comparing mixed types) is a
    `CaptureFailed` naming the path, default or not.
    """

    __slots__ = ("default", "describe", "finder", "kind", "source", "take_all")

    def __init__(self, kind: str, source: Any, *, take_all: bool = False, default: Any = NOTHING) -> None:
        self.kind = kind
        self.source = source
        self.take_all = take_all
        self.default = default
        self.finder: PathFinder | None = compile_json_path(source) if kind == "json" else None
        self.describe = {"json": f"JSON path {_jsonpath.text_of(source)!r}", "header": f"header {source!r}"}.get(
            kind, f"function {getattr(source, '__name__', source)!r}"
        )

    @classmethod
    def json(cls, path: Expression, *, all: bool = False, default: Any = NOTHING) -> Capture:  # noqa: A002 - reads well
        """The first match of ``path`` in the JSON body (a list of all matches with ``all=True``)."""
        if not _is_path(path):
            msg = f"Capture.json() takes a JSON path ('$.data') or a jsonpath-ng expression, got {path!r}"
            raise ConfigurationError(msg)
        return cls("json", path, take_all=all, default=default)

    @classmethod
    def header(cls, name: str, *, default: Any = NOTHING) -> Capture:
        """The value of the response header ``name`` (case-insensitive)."""
        return cls("header", name, default=default)

    @classmethod
    def using(cls, func: Callable[[Any], Any]) -> Capture:
        """Whatever ``func(response)`` returns."""
        if not callable(func):
            msg = f"Capture.using() takes a function of the response, got {func!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        return cls("function", func)

    @classmethod
    def of(cls, spec: Any, key: str) -> Capture:
        """A `Capture`, a JSON path (``"$..."`` or jsonpath-ng's) or a function of the response, as a `Capture`."""
        if isinstance(spec, Capture):
            return spec
        if _is_path(spec):
            return cls.json(spec)
        if callable(spec):
            return cls.using(spec)
        msg = f"capture {key!r}: give a JSON path ('$.data'), a Capture or a function of the response, got {spec!r}"
        raise ConfigurationError(msg)

    def take(self, response: Any, body: Observed) -> Any:
        """The captured value; `NOTHING` when nothing was found and there is no default.

        Raises `PathError` when the JSON path cannot be evaluated on the body.
        """
        if self.kind == "json":
            assert self.finder is not None  # noqa: S101 - set for every JSON capture
            if not body.is_json:
                return self.default
            matches = self.finder(body.json)
            if self.take_all:
                return matches
            return matches[0] if matches else self.default
        if self.kind == "header":
            value = response.headers.get(self.source)
            return self.default if value is None else value
        return self.source(response)

    def __reduce__(self) -> tuple[Any, ...]:
        # The compiled path is rebuilt where the capture arrives.
        return (_capture, (self.kind, self.source, self.take_all, self.default))

    def __repr__(self) -> str:
        return f"Capture({self.describe})"


def _capture(kind: str, source: Any, take_all: bool, default: Any) -> Capture:
    return Capture(kind, source, take_all=take_all, default=default)


# -- checks: conditions the response must meet ------------------------------------------


class _Check:
    """One condition the response must meet, and the message to raise when it does not."""

    __slots__ = ("condition", "message")

    def __init__(self, condition: Condition, message: str | None = None) -> None:
        self.condition = condition
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Check, (self.condition, self.message))

    def __repr__(self) -> str:
        said = "" if self.message is None else f": {self.message!r}"
        return f"<check {self.condition!r}{said}>"


CheckSpec = ConditionSpec
"""A check is a condition, in any form `as_condition` takes (the same as `Poll`'s)."""


def parse_checks(spec: object, message: str | None = None, *, owner: str = "Request") -> tuple[_Check, ...]:
    """The checks ``spec`` asks for: ``None`` for none, or one condition in any accepted form.

    A condition made of parts that must all hold (``a & b``, a dict) becomes one check
    per part, so that a failure names the part that failed.  A list means any of its
    items, as everywhere conditions are given.
    """
    if spec is None:
        return ()
    if isinstance(spec, tuple) and spec and all(isinstance(item, _Check) for item in spec):
        return spec  # already parsed: the checks a fluent `check()` collected
    if message is not None and (not isinstance(message, str) or not message.strip()):
        msg = f"{owner}: check(message=) takes a non-empty str, got {message!r}"
        raise ConfigurationError(msg)
    try:
        condition = as_condition(spec)
    except ConfigurationError as error:
        msg = f"{owner}: check: {error}"
        raise ConfigurationError(msg) from None
    parts = condition.conditions if isinstance(condition, AllOf) else (condition,)
    return tuple(_Check(part, message) for part in parts)


# -- the service ------------------------------------------------------------------------

_FORMATTER = string.Formatter()
_SUCCESS = range(200, 300)
_SUCCESS_CLASS = 2
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*\Z")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HTTP = re.compile(r"(?i)https?://")
_NOT_IN_A_URL = (bytes, bytearray, memoryview, Mapping, list, tuple, set, frozenset)


class Placeholder:
    """One ``{key}`` of a URL template: where it is, and whether its value is a secret."""

    __slots__ = ("in_path", "key", "secret")

    def __init__(self, key: str, *, in_path: bool) -> None:
        self.key = key
        self.in_path = in_path
        self.secret = _redact.is_sensitive_field(key)


def _url_template(url: str, owner: str) -> tuple[tuple[str, Placeholder | None], ...]:
    """``"/users/{id}/x"`` as ``(("/users/", Placeholder("id")), ("/x", None))``."""
    try:
        parsed = list(_FORMATTER.parse(url))
    except ValueError as error:
        msg = f"{owner}: the URL {_redact.url(url)!r} is not a valid template: {error}"
        raise ConfigurationError(msg) from None
    parts: list[tuple[str, Placeholder | None]] = []
    in_path = True
    for literal, field, spec, conversion in parsed:
        in_path = in_path and "?" not in literal and "#" not in literal
        if field is None:
            parts.append((literal, None))
            continue
        if not _IDENTIFIER.match(field) or spec or conversion:
            given = f"{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}"
            msg = (
                f"{owner}: URL placeholders name a context key, like {{user_id}}, without "
                f"conversions or format specs; got {{{given}}}"
            )
            raise ConfigurationError(msg)
        parts.append((literal, Placeholder(field, in_path=in_path)))
    return tuple(parts)


def _url_value(value: Any, place: Placeholder) -> str | None:
    """``value`` quoted for its placeholder, or ``None`` when it cannot stand in one."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is not str:
        if value is None or isinstance(value, (bool, *_NOT_IN_A_URL)):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        value = str(value)
    if not value or (place.in_path and not value.strip(".")):
        return None  # "" empties its segment; "." and ".." would be removed with it
    return quote(value, safe="")


def _why_not(value: Any, place: Placeholder) -> str:
    if value is None or isinstance(value, (bool, *_NOT_IN_A_URL)):
        return f"it is {'None' if value is None else 'a ' + type(value).__name__}, not a string or a number"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if not str(value):
        return f"an empty string would leave its {'path segment' if place.in_path else 'query value'} empty"
    return "it is made only of dots: '.' and '..' are removed from URL paths, with a segment"


def _put(headers: dict[str, str], key: str, value: str | None) -> None:
    """Set (or, with ``None``, remove) header ``key``, replacing it whatever its case."""
    lowered = key.lower()
    for existing in [name for name in headers if name.lower() == lowered]:
        del headers[existing]
    if value is not None:
        headers[key] = value


def _query(pairs: Iterable[tuple[str, Any]]) -> str:
    """``pairs`` URL-encoded; ``None`` values (also in lists) are left out, as `requests` does."""
    kept: list[tuple[str, Any]] = []
    for name, value in pairs:
        if value is None:
            continue
        kept.append((name, [item for item in value if item is not None] if isinstance(value, (list, tuple)) else value))
    return urlencode(kept, doseq=True)


def _param_problem(pairs: Iterable[tuple[str, Any]]) -> str | None:
    """What makes a query parameter unsendable (a dict would send its keys, NaN ``nan``); ``None`` when fine."""
    for name, value in pairs:
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, (Mapping, set, frozenset)) or (isinstance(item, float) and not math.isfinite(item)):
                what = f"{item!r}, not a finite number" if isinstance(item, float) else f"a {type(item).__name__}"
                return f"param {name!r} takes a string, a number or a list of them; got {what}"
    return None


class _Missing(KeyError):
    """A function of the context read a key the context does not have."""


class _Lookup(dict):  # type: ignore[type-arg]
    """The context as functions of it see it: a missing key is told apart from other KeyErrors."""

    __slots__ = ()

    def __missing__(self, key: Any) -> Any:
        raise _Missing(key)


def _pairs(value: Any, what: str, owner: str) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, (list, tuple)) and all(isinstance(p, tuple) and len(p) == 2 for p in value):  # noqa: PLR2004
        return list(value)
    # The type only: a header mapping given as text ("Authorization: ...") is a secret.
    kind = type(value).__name__ if not isinstance(value, (list, tuple)) else f"a {type(value).__name__} of other things"
    msg = f"{owner}: {what} takes a mapping, a list of (name, value) pairs or a function of the context, got {kind}"
    raise ConfigurationError(msg)


def _json_problem(body: Any) -> str | None:
    """Why ``body`` cannot be sent as JSON (a set, an object, NaN...), never showing it; ``None`` when it can."""
    if body is None or isinstance(body, (str, int)):
        return None
    try:
        json.dumps(body, allow_nan=False)  # the rule of requests and httpx alike
    except (TypeError, ValueError, RecursionError) as error:
        return f"its JSON body cannot be encoded as JSON ({type(error).__name__}: {str(error)[:100]})"
    return None


_FORM_TYPES = (str, bytes, bytearray, memoryview, Mapping, list, tuple)


def _form_problem(data: Any, streams: tuple[str, ...]) -> str | None:
    """Why ``data`` cannot be sent as a form or raw body; ``None`` when it can.

    ``streams`` names the methods of what the transport can stream (files, iterables).
    """
    if data is None or isinstance(data, _FORM_TYPES) or any(hasattr(data, name) for name in streams):
        return None
    what = "an async iterable" if streams == ("__aiter__",) else "a file or an iterable"
    return f"its form body (data) takes a mapping, (name, value) pairs, str, bytes or {what}, got {type(data).__name__}"


def _add_query(url: str, query: str) -> str:
    if not query:
        return url
    base, hash_mark, fragment = url.partition("#")
    joined = f"{base}{'&' if '?' in base else '?'}{query}"
    return f"{joined}{hash_mark}{fragment}"


class Request(Service):
    """An HTTP request as a service: it reads the context, sends, checks, and returns captures.

    ::

        Request("GET", "/users/{user_id}", client=api, capture={"user": "$.data"}, check={"status": 200})
        Request.get("/users/{user_id}", client=api).capture("user", "$.data").check(status=200)

    ``method``, ``url``
        ``{name}`` placeholders are filled from the context (URL-quoted, each value
        within its segment; ``None``, bytes, containers, ``""`` and dot segments raise
        `RequestBuildError`); a relative URL is joined to ``base_url`` (the
        request's, else the client's), a protocol-relative one (``//host/p``) keeps
        its host;
    ``params``, ``headers``
        a mapping or pairs, or a function of the context returning one; a value in the
        mapping may itself be a function of the context.  ``params`` add to a query
        string already in the URL;
    ``json``, ``data``
        a JSON body or a form body (mapping, pairs, str or bytes), or a function of the
        context returning one;
    ``capture``
        ``{key: spec}``: the values put in the context, from a JSON path (``"$.data"``),
        a `Capture`, or a function of the response.  They are the service's ``provides``;
    ``check``
        a condition the response must meet, else `CheckFailed`: in any form `Poll`'s
        conditions take (`service_flow.http.conditions`): a `Condition`, a function of
        the response, the dict form ``{"status": 200, "json": ..., "jsonpath": {path:
        value}, "headers": {...}}`` (every part must hold) or a list (any of them);
    ``on_status``
        overrides of the client's status mapping (see `service_flow.http.status`);
    ``idempotent``
        whether a 5xx or a lost response may be retried; by default, true for every
        method but POST and PATCH;
    ``timeout``, ``auth``, ``allow_redirects``, ``verify``, ``max_body``
        override the client's; ``limits`` are entered after the client's;
    ``client``
        the `Client` sending it (default: a new one; requests built from each other
        with the fluent methods share it);
    ``name``
        the step's name in logs and errors (default: ``"GET /users/{user_id}"``, with
        the URL's secrets masked).
    """

    name: ClassVar[str | None] = None
    blocking: ClassVar[bool] = True  # requests blocks: async flows run it in a thread
    streams: ClassVar[tuple[str, ...]] = ("read", "__iter__")
    """What a body the transport streams has: files and iterables (async ones for `AsyncRequest`)."""

    def __init__(  # noqa: PLR0913 - the options of a request, all keyword-only, each checked
        self,
        method: str,
        url: str,
        *,
        client: Client | None = None,
        base_url: str | None = None,
        params: Any = None,
        headers: Any = None,
        json: Any = NOTHING,
        data: Any = None,
        capture: Mapping[str, Any] | None = None,
        check: CheckSpec | None = None,
        on_status: StatusActions | None = None,
        idempotent: bool | None = None,
        timeout: Timeout | None = None,
        auth: Auth | _Nothing | None = NOTHING,
        limits: Iterable[Limit] = (),
        allow_redirects: bool = True,
        verify: Verify | _Nothing = NOTHING,
        max_body: int | _Nothing | None = NOTHING,
        name: str | None = None,
    ) -> None:
        if not isinstance(method, str) or not method.isalpha():
            msg = f"Request: the method must be a word like 'GET', got {method!r}"
            raise ConfigurationError(msg)
        if not isinstance(url, str):
            msg = f"Request: the URL must be a string, got {url!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        method = method.upper()
        client = Client() if client is None else client
        self._config: dict[str, Any] = {
            "method": method,
            "url": url,
            "client": client,
            "base_url": base_url,
            "params": params,
            "headers": headers,
            "json": json,
            "data": data,
            "capture": dict(capture or {}),
            "check": check,
            "on_status": on_status,
            "idempotent": idempotent,
            "timeout": timeout,
            "auth": auth,
            "limits": tuple(limits),
            "allow_redirects": allow_redirects,
            "verify": verify,
            "max_body": max_body,
            "name": name,
        }
        label = name or f"{method} {_redact.url(url)}"  # a step's name is logged: no secrets in it
        owner = f"Request {label!r}"
        # Instance attributes shadow Service's class-level declarations on purpose.
        self.name = label  # type: ignore[misc]
        self.method = method
        self.url = url
        self.client = client
        self.resources = (client,)

        self._compile_url(base_url, params, owner)
        self._compile_headers(headers, owner)
        self._compile_body(json, data, owner)

        self._timeout = client.timeout if timeout is None else check_timeout(timeout, owner)
        self.auth: Auth | None = client.auth if isinstance(auth, _Nothing) else check_auth(auth, f"{owner}: auth=")
        self.limits: tuple[Limit, ...] = client.limits + tuple(limits)
        self._allow_redirects = allow_redirects
        self._verify = None if isinstance(verify, _Nothing) else check_verify(verify, owner)
        self._max_body = client.max_body if isinstance(max_body, _Nothing) else check_max_body(max_body, owner)
        self._idempotent = method in IDEMPOTENT_METHODS if idempotent is None else bool(idempotent)
        self._status_map = client.status_map.merged(on_status)
        # A 2xx needs no lookup unless someone remapped a 2xx.
        self._plain_2xx = _SUCCESS_CLASS not in self._status_map.by_class and not any(
            s in _SUCCESS for s in self._status_map.by_status
        )
        self._checks = parse_checks(check, owner=owner)
        self._captures = tuple((key, Capture.of(spec, key)) for key, spec in self._config["capture"].items())
        for key, _ in self._captures:
            if not isinstance(key, str) or not key:
                msg = f"{owner}: capture keys are context keys (non-empty strings), got {key!r}"
                raise ConfigurationError(msg)
        self.provides = tuple(key for key, _ in self._captures)  # type: ignore[misc]

    def _compile_url(self, base_url: str | None, params: Any, owner: str) -> None:
        # The base joined once; static params encoded once.
        base = check_base_url(base_url, owner) if base_url is not None else self.client.base_url
        url = self.url
        if url.startswith("//"):  # protocol-relative: its own host, the base's scheme
            if not base:
                msg = f"{owner}: the URL {_redact.url(url)!r} has no scheme; write https://... or give a base_url"
                raise ConfigurationError(msg)
            full = f"{urlsplit(base).scheme}:{url}"
        elif _ABSOLUTE.match(url) or not base:
            full = url
        else:
            full = f"{base}/{url.lstrip('/')}"
        if not _HTTP.match(full):  # a placeholder's value is quoted: it can never add a scheme
            shown = _redact.url(url)
            msg = (
                f"{owner}: the URL {shown!r} has no base_url to be joined to; give the client (or the request) "
                "a base_url, or an absolute http or https URL"
                if not _ABSOLUTE.match(full)
                else f"{owner}: the URL {shown!r} is not http or https"
            )
            raise ConfigurationError(msg)
        self._static_query = ""
        self._params: Callable[[Context], Any] | None = None
        self._param_pairs: list[tuple[str, Any]] = []
        if callable(params):
            self._params = params
        elif params is not None:
            pairs = _pairs(params, "params", owner)
            if any(callable(v) for _, v in pairs):
                self._param_pairs = pairs
            else:
                problem = _param_problem(pairs)
                if problem is not None:
                    msg = f"{owner}: {problem}"
                    raise ConfigurationError(msg)
                self._static_query = _query(pairs)
        self._template = _url_template(full, owner)
        self._fixed_url: str | None = None
        if all(place is None for _, place in self._template):
            self._fixed_url = _add_query("".join(lit for lit, _ in self._template), self._static_query)
        self._secret_places = any(place is not None and place.secret for _, place in self._template)
        self.requires = tuple(dict.fromkeys(place.key for _, place in self._template if place is not None))
        """The context keys the URL's placeholders need."""

    def _compile_headers(self, headers: Any, owner: str) -> None:
        # The client's headers and the static ones merged once.
        self._headers_func: Callable[[Context], Any] | None = None
        self._header_funcs: list[tuple[str, Callable[[Context], Any]]] = []
        static_headers = dict(self.client.headers)
        if callable(headers):
            self._headers_func = headers
        elif headers is not None:
            for key, value in _pairs(headers, "headers", owner):
                if callable(value):
                    problem = header_problem(key, "")
                    self._header_funcs.append((key, value))
                else:  # as in requests, None removes a client's header
                    problem = header_problem(key, "" if value is None else value)
                    _put(static_headers, key, value)
                if problem is not None:
                    msg = f"{owner}: {problem}"
                    raise ConfigurationError(msg)
        self._static_headers = static_headers

    def _compile_body(self, json: Any, data: Any, owner: str) -> None:
        if json is not NOTHING and data is not None:
            msg = f"{owner}: give a JSON body or a form body (data), not both"
            raise ConfigurationError(msg)
        self._json = None if json is NOTHING else json
        self._data = data
        self._data_funcs = isinstance(data, Mapping) and any(callable(v) for v in data.values())
        problem = None if callable(self._json) else _json_problem(self._json)
        if problem is None and not callable(data):
            problem = _form_problem(data, self.streams)
        if problem is not None:
            msg = f"{owner}: {problem}"
            raise ConfigurationError(msg)

    # -- fluent spelling: each returns a new Request ----------------------------------

    def _replace(self, **changes: Any) -> Request:
        config = {**self._config, **changes}
        return Request(config.pop("method"), config.pop("url"), **config)

    @classmethod
    def get(cls, url: str, **options: Any) -> Request:
        """A GET request (options as for the constructor)."""
        return cls("GET", url, **options)

    @classmethod
    def post(cls, url: str, **options: Any) -> Request:
        """A POST request."""
        return cls("POST", url, **options)

    @classmethod
    def put(cls, url: str, **options: Any) -> Request:
        """A PUT request."""
        return cls("PUT", url, **options)

    @classmethod
    def patch(cls, url: str, **options: Any) -> Request:
        """A PATCH request."""
        return cls("PATCH", url, **options)

    @classmethod
    def delete(cls, url: str, **options: Any) -> Request:
        """A DELETE request."""
        return cls("DELETE", url, **options)

    @classmethod
    def head(cls, url: str, **options: Any) -> Request:
        """A HEAD request."""
        return cls("HEAD", url, **options)

    def capture(
        self,
        key: str,
        path: Expression | Callable[[Any], Any] | Capture | None = None,
        *,
        header: str | None = None,
        all: bool = False,  # noqa: A002 - reads well: capture("ids", "$.items[*].id", all=True)
        default: Any = NOTHING,
    ) -> Request:
        """Also put ``key`` in the context: from a JSON ``path``, a ``header``, or a function of the response.

        ``path`` is a string (``"$.data"``) or an expression compiled by jsonpath-ng.
        """
        if (path is None) == (header is None):
            msg = f"Request {self.name!r}: capture({key!r}) takes a JSON path or function, or header=, exactly one"
            raise ConfigurationError(msg)
        if header is not None:
            spec: Capture = Capture.header(header, default=default)
        elif isinstance(path, (str, JSONPath)):
            spec = Capture.json(path, all=all, default=default)
        else:
            spec = Capture.of(path, key)
        return self._replace(capture={**self._config["capture"], key: spec})

    def check(
        self,
        *conditions: ConditionSpec,
        message: str | None = None,
        status: Any = NOTHING,
        json: Any = NOTHING,
        jsonpath: Any = NOTHING,
        headers: Mapping[str, str | None] | _Nothing | None = NOTHING,
        text: str | _Nothing = NOTHING,
    ) -> Request:
        """Also require these conditions of the response, else `CheckFailed` (saying ``message``, when given).

        Each positional condition takes any form `Poll`'s conditions take: a `Condition`
        (``Status(200) & (JsonPath("$.state") == "done")``), a function of the response,
        the dict form, a list (any of its items).  The keywords are the dict form's keys:
        ``check(status=200, jsonpath={"$.state": "done"})`` is ``check({"status": 200,
        "jsonpath": {"$.state": "done"}})``.  Every condition given must hold.
        """
        given = {"status": status, "json": json, "jsonpath": jsonpath, "headers": headers, "text": text}
        parts = {key: value for key, value in given.items() if value is not NOTHING}
        for key in ("jsonpath", "headers"):  # None: not given, as before
            if parts.get(key, NOTHING) is None:
                del parts[key]
        specs = [*conditions, parts] if parts else list(conditions)
        owner = f"Request {self.name!r}"
        if not specs:
            msg = f"{owner}: check() needs a condition (or status=, json=, jsonpath=, headers=, text=)"
            raise ConfigurationError(msg)
        added = tuple(check for spec in specs for check in parse_checks(spec, message, owner=owner))
        return self._replace(check=self._checks + added)

    def with_params(self, params: Any) -> Request:
        """Send these query parameters (a mapping, pairs, or a function of the context)."""
        return self._replace(params=params)

    def with_headers(self, headers: Any) -> Request:
        """Send these headers on top of the client's."""
        return self._replace(headers=headers)

    def with_json(self, body: Any) -> Request:
        """Send this JSON body (or the one a function of the context returns)."""
        return self._replace(json=body, data=None)

    def with_form(self, data: Any) -> Request:
        """Send this form body (or the one a function of the context returns)."""
        return self._replace(data=data, json=NOTHING)

    def with_options(self, **options: Any) -> Request:
        """A copy with any constructor options changed: ``timeout``, ``on_status``, ``limits``, ``auth``..."""
        return self._replace(**options)

    # -- running ----------------------------------------------------------------------

    @forgetting
    def __call__(self, context: Context) -> dict[str, Any]:
        """Send the request built from ``context``; return the captured values."""
        out = self.build(context)
        del context  # its values (secrets too) stay out of tracebacks rendered with locals
        response = self.client.send(out, auth=self.auth, limits=self.limits)
        try:
            if self.accepts(response.status_code):
                self.read_body(response, out)
            else:
                _body.read_prefix(response)  # for the error's excerpt
            return self.interpret(response, out)
        finally:
            response.close()  # every response is closed: its connection goes back to the pool

    def accepts(self, status: int) -> bool:
        """Whether a response with ``status`` is one to check and capture from (mapped to ``"ok"``)."""
        if self._plain_2xx and status in _SUCCESS:
            return True
        return self._status_map.action(status, idempotent=self._idempotent) is Action.OK

    def read_body(self, response: Any, out: Outgoing) -> None:
        """Read a requests response's body whole, within ``max_body`` (`BodyTooLarge` beyond)."""
        failure = None
        try:
            whole = _body.read(response, out.max_body, head=out.method == "HEAD")
        except READ_ERRORS as error:
            failure = self.client.read_error(out, error)
        if failure is not None:  # raised outside the except clause: its chain is masked copies only
            response.close()
            raise failure
        if not whole:
            raise self.too_large(response, out)

    def read_polled(self, response: Any, out: Outgoing) -> None:
        """Read a polled requests response: as `read_body`, or bounded when its status is not accepted.

        Conditions may judge any status, so a poll reads every body; one whose status the
        request does not accept is read up to `_body.POLLED_BYTES` when there is no
        ``max_body`` (beyond that, the prefix is what conditions see).
        """
        if out.max_body is not None or self.accepts(response.status_code):
            self.read_body(response, out)
            return
        failure = None
        try:
            _body.read(response, _body.POLLED_BYTES, head=out.method == "HEAD")
        except READ_ERRORS as error:
            failure = self.client.read_error(out, error)
        if failure is not None:  # raised outside the except clause: its chain is masked copies only
            response.close()
            raise failure

    def too_large(self, response: Any, out: Outgoing) -> BodyTooLarge:
        """The error for a body past ``max_body``."""
        what = f"the body is larger than max_body={out.max_body} bytes"
        return self._failure(BodyTooLarge, what, response, out, limit=out.max_body)  # type: ignore[return-value]

    def build(self, context: Context) -> Outgoing:
        """The request to send for ``context``: URL, headers and body filled in."""
        url = self._fixed_url
        shown: str | None = None
        hidden: tuple[str, ...] = ()
        if url is None:
            url = self._fill(context)
            if self._secret_places:
                shown = _redact.url(_add_query(self._fill(context, masked=True), self._static_query))
                hidden = tuple(str(context[p.key]) for _, p in self._template if p is not None and p.secret)
            url = _add_query(url, self._static_query)
        view = None
        if self._params is not None or self._param_pairs:
            view = _Lookup(context)
            pairs = self._dynamic_pairs(view, context)
            self._refuse(_param_problem(pairs), "its params")
            query = _query(pairs)
            url = _add_query(url, query)
            if shown is not None:
                shown = _redact.url(_add_query(shown, query))
        body = self._json
        data = self._data
        if callable(body):
            body = self._apply(body, context, "its JSON body")
            self._refuse(_json_problem(body), "its JSON body")
        elif callable(data):
            data = self._apply(data, context, "its form body")
            self._refuse(_form_problem(data, self.streams), "its form body")
        elif self._data_funcs:
            data = {k: self._apply(v, context, f"form field {k!r}") if callable(v) else v for k, v in data.items()}
        # Headers last, so that no frame raising an error holds their values.
        headers = (
            self._static_headers
            if self._headers_func is None and not self._header_funcs
            else self._dynamic_headers(_Lookup(context) if view is None else view, context)
        )
        return Outgoing(
            self.method,
            url,
            headers,
            body,
            data,
            self._timeout,
            allow_redirects=self._allow_redirects,
            idempotent=self._idempotent,
            service=self.name or "",
            verify=self._verify,
            max_body=self._max_body,
            shown=shown,
            hidden=hidden,
        )

    def _fill(self, context: Context, *, masked: bool = False) -> str:
        """The URL template filled from ``context`` (secret placeholders as ``***`` when ``masked``)."""
        parts = []
        for literal, place in self._template:
            parts.append(literal)
            if place is None:
                continue
            if masked and place.secret:
                parts.append(_redact.MASK)
                continue
            try:
                value = context[place.key]
            except KeyError:
                raise self._missing(place.key, context, "its URL") from None
            quoted = _url_value(value, place)
            if quoted is None:
                part = f"placeholder {place.key!r}"
                why = _why_not(value, place)
                msg = f"{self.name}: context key {place.key!r} cannot fill its URL placeholder: {why}"
                raise RequestBuildError(msg, method=self.method, url=_redact.url(self.url), part=part)
            parts.append(quoted)
        return "".join(parts)

    def _apply(self, func: Callable[[Context], Any], context: Context, what: str, view: Context | None = None) -> Any:
        """``func(context)``; a missing key becomes `MissingContextKey`, other errors name ``what``."""
        try:
            return func(_Lookup(context) if view is None else view)
        except _Missing as missing:
            raise self._missing(str(missing.args[0]), context, what) from None
        except FlowError:
            raise  # StopFlow, Retry, Fatal... steer the run as they are
        except Exception as error:
            reason = _redact.scrub(f"{type(error).__name__}: {error}", ())[:300]
            msg = f"{self.name}: the function computing {what} failed: {reason}"
            raise RequestBuildError(msg, method=self.method, url=_redact.url(self.url), part=what) from error

    def _computed_pairs(self, value: Any, what: str) -> list[tuple[str, Any]]:
        """The pairs a function of the context returned for ``what``, else `RequestBuildError`."""
        try:
            return _pairs(value, what, f"the function computing its {what} returned a value that")
        except ConfigurationError as error:
            msg = f"{self.name}: {error}"
            raise RequestBuildError(msg, method=self.method, url=_redact.url(self.url), part=f"its {what}") from None

    def _refuse(self, problem: str | None, part: str) -> None:
        """Raise `RequestBuildError` for ``part`` when a computed value has a ``problem``."""
        if problem is not None:
            msg = f"{self.name}: {problem}"
            raise RequestBuildError(msg, method=self.method, url=_redact.url(self.url), part=part)

    def _dynamic_headers(self, view: Context, context: Context) -> dict[str, str]:
        headers = dict(self._static_headers)
        given: Any = None
        value: Any = None
        problem = None
        try:
            pairs: list[tuple[str, Any]] = []
            if self._headers_func is not None:
                given = self._apply(self._headers_func, context, "its headers", view)
                pairs = self._computed_pairs(given, "headers")
            pairs += [(key, self._apply(func, context, f"header {key!r}", view)) for key, func in self._header_funcs]
            for key, value in pairs:
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    value = str(value)  # noqa: PLW2901 - a computed number is sent as text (NaN is refused)
                problem = None if value is None else header_problem(key, value)  # None: not sent
                if problem is not None:
                    break
                _put(headers, key, value)
            else:
                return headers
        finally:
            # Header values stay out of this frame's locals (tracebacks rendered with locals).
            del headers, given, value, pairs
        msg = f"{self.name}: {problem}"
        raise RequestBuildError(msg, method=self.method, url=_redact.url(self.url), part=f"header {key!r}")

    def _dynamic_pairs(self, view: Context, context: Context) -> list[tuple[str, Any]]:
        if self._params is not None:
            return self._computed_pairs(self._apply(self._params, context, "its params", view), "params")
        return [(k, self._apply(v, context, f"param {k!r}", view) if callable(v) else v) for k, v in self._param_pairs]

    def _missing(self, key: str, context: Context, where: str) -> MissingContextKey:
        return MissingContextKey(
            f"{self.name} needs context key {key!r} for {where}; the context has: {', '.join(map(repr, context))}",
            key=key,
            service=self.name,
            available=context,
        )

    def interpret(self, response: Any, out: Outgoing | None = None) -> dict[str, Any]:
        """What ``response`` means: an error for its status or a failed check, else the captures."""
        status = response.status_code
        if not (self._plain_2xx and status in _SUCCESS):
            action = self._status_map.action(status, idempotent=self._idempotent)
            if action is not Action.OK:
                raise self._status_error(action, response, out)
        body = Observed(response)
        for check in self._checks:
            if not check.condition.holds(body):
                raise self._check_failed(check, response, body, out)
        captured: dict[str, Any] = {}
        for key, capture in self._captures:
            try:
                value = capture.take(response, body)
            except PathError as error:
                why = f"jsonpath-ng could not evaluate it on the body ({error.reason})"
                raise self._failure(
                    CaptureFailed, f"capture {key!r} ({capture.describe}): {why}", response, out, key=key
                ) from None
            if value is NOTHING:
                why = body.not_json if capture.kind == "json" and not body.is_json else "found nothing"
                raise self._failure(
                    CaptureFailed, f"capture {key!r} ({capture.describe}): {why}", response, out, key=key
                )
            captured[key] = value
        return captured

    def _check_failed(self, check: _Check, response: Any, body: Observed, out: Outgoing | None) -> HTTPError:
        describe = repr(check.condition)
        what = f"check {describe} failed: {check.condition.why_not(body)}"
        if check.message is not None:
            what = f"{check.message} ({what})"
        return self._failure(CheckFailed, what, response, out, check=describe)

    def _status_error(self, action: Action, response: Any, out: Outgoing | None) -> Exception:
        if action is Action.RETRY:
            headers = response.headers
            delay = parse_retry_after(
                headers.get("Retry-After"), date=headers.get("Date"), cap=self.client.max_retry_after
            )
            raw = getattr(response, "raw", None)
            history = getattr(getattr(raw, "retries", None), "history", None) or ()
            if history:
                return self._failure(
                    RetriesExhausted,
                    f"still {response.status_code} after {len(history)} transport retries",
                    response,
                    out,
                    delay=delay,
                    attempts=len(history) + 1,
                )
            return self._failure(RetryableHTTPError, "try again later", response, out, delay=delay)
        kind = {Action.FAIL: ResponseError, Action.FATAL: FatalHTTPError, Action.STOP: HTTPStopped}[action]
        return self._failure(kind, f"mapped to {action.value!r}", response, out)

    def _failure(self, kind: type[HTTPError], what: str, response: Any, out: Outgoing | None, **data: Any) -> HTTPError:
        secrets = out.secrets(self.auth) if out is not None else []
        info = response_info(response, secrets)
        method = out.method if out is not None else self.method
        url = out.shown_url() if out is not None else _redact.url(self.url)
        excerpt = f"; body: {info.excerpt}" if info.excerpt else ""
        message = f"{method} {url} -> {info.status_code}: {what}{excerpt}"
        return kind(message, method=method, url=url, response=info, **data)

    def __reduce__(self) -> tuple[Any, ...]:
        # Compiled paths and templates are rebuilt where the request arrives.
        config = dict(self._config)
        return (_rebuild, (config.pop("method"), config.pop("url"), config))

    def __repr__(self) -> str:
        return f"<Request {self.name}>"


def _rebuild(method: str, url: str, config: dict[str, Any]) -> Request:
    return Request(method, url, **config)


def response_info(response: Any, secrets: Iterable[str] = ()) -> ResponseInfo:
    """What an error keeps of ``response``: status, masked headers, a masked excerpt.

    A body not read yet is read no further than `service_flow.http._body.PREFIX_BYTES`.
    """
    content = _body.content(response)
    try:
        elapsed = response.elapsed
    except Exception:  # noqa: BLE001 - httpx raises on a response still open
        elapsed = None
    return ResponseInfo(
        status_code=response.status_code,
        headers=_redact.headers(response.headers),
        excerpt=_excerpt(response, content, secrets),
        elapsed=None if elapsed is None else float(elapsed.total_seconds()),
    )


def _excerpt(response: Any, content: bytes, secrets: Iterable[str]) -> str:
    excerpt = _redact.excerpt(content, secrets)
    if len(content) > _body.PREFIX_BYTES and excerpt.endswith(" bytes of binary content>"):
        # Only a prefix was read: say how large the body is when the server did.
        length = _body.declared_length(response.headers)
        size = f"{length} bytes" if length is not None else f"more than {_body.PREFIX_BYTES} bytes"
        excerpt = f"<{size} of binary content>"
    return excerpt
