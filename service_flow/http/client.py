"""The HTTP client: one pooled, thread-safe `requests.Session` and the defaults of its requests.

A `Client` holds what every request to one API shares: the base URL, default headers,
authentication, timeouts, TLS verification (on by default), transport retries,
limits and status overrides.  Its session is created on first use, under a lock, and is
a *resource*: `setup` creates it afresh and `teardown` closes it, so a driver that
restarts after a `Fatal` gets new connections.  A client pickles without its session,
so flows using it can be sent to process pools.

This is the one place where `requests` is called (`Client.send`); building a request
from the context and interpreting the response live in `service_flow.http.request` and
do not depend on the transport.

The environment (proxies, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``,
``.netrc``) is read once, when the session opens, not on every request as
``requests.Session.request`` does (a measurable part of each request's cost); a
``setup()`` reads it afresh.  ``trust_env=False`` ignores it.  An explicit ``verify``
(``False`` or a CA path) is never overridden by the environment.
"""

from __future__ import annotations

import contextlib
import functools
import math
import netrc
import os
import re
import ssl
import threading
import time
import traceback
import zlib
from collections.abc import Awaitable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Final, TypeVar, Union
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests
import requests.adapters
import requests.utils
from requests.auth import _basic_auth_str
from urllib3.exceptions import ConnectTimeoutError, DecodeError, MaxRetryError, NewConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util import Retry as Urllib3Retry

from service_flow import _log
from service_flow._log import debug_logger
from service_flow.clock import SYSTEM_CLOCK, Clock
from service_flow.exceptions import ConfigurationError, FlowError
from service_flow.http import _body, _redact
from service_flow.http.auth import check_auth
from service_flow.http.errors import RequestBuildError, RetriesExhausted, RetryableHTTPError, TransportError
from service_flow.http.status import IDEMPOTENT_METHODS, MAX_RETRY_AFTER, StatusActions, StatusMap, parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from typing_extensions import Self
    from urllib3.response import BaseHTTPResponse

    from service_flow.http.auth import Auth
    from service_flow.http.request import Outgoing, Request

__all__ = ["DEFAULT_TIMEOUT", "RETRY_STATUSES", "Client", "Limit", "Timeout", "TransportRetry", "Verify"]

_redact.install_log_filter()  # urllib3's and requests' own log lines get masked URLs too

Timeout = Union[float, tuple[float, float]]
"""Seconds: one number for both, or ``(connect, read)``."""

Verify = Union[bool, str, "os.PathLike[str]"]
"""TLS verification: ``True`` (the default CAs), ``False`` (none), or a CA bundle file or directory."""

Limit = contextlib.AbstractContextManager[Any]
"""Anything used as ``with limit:`` around each request (`RateLimit`, `ConcurrencyLimit`)."""

DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 30.0)
"""Connect and read timeouts, in seconds, when none is given: a request never waits forever."""

READ_ERRORS: tuple[type[Exception], ...] = (OSError, zlib.error, Urllib3Error)
"""What reading a requests response's body may raise: a broken connection, a bad encoding."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""The statuses the client's transport retries (``retries=n``) send again."""


class TransportRetry(Urllib3Retry):
    """urllib3's `Retry`, waiting on our `Clock` and reading ``Retry-After`` as we do.

    ``Retry-After`` is capped at ``max_retry_after`` and measured against the response's
    ``Date``; an unreadable or negative value falls back to the backoff.  Build one
    with `TransportRetry.of` or pass ``retries=n`` to `Client`.
    """

    clock: Clock = SYSTEM_CLOCK
    max_retry_after: float = MAX_RETRY_AFTER

    @classmethod
    def of(
        cls,
        attempts: int,
        *,
        backoff: float = 0.5,
        clock: Clock = SYSTEM_CLOCK,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> TransportRetry:
        """Up to ``attempts`` retries of idempotent requests on connection errors and `RETRY_STATUSES`."""
        retry = cls(
            total=attempts,
            backoff_factor=backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=IDEMPOTENT_METHODS,
            raise_on_status=False,  # the last response goes through our status mapping
            respect_retry_after_header=True,
        )
        retry.clock = clock
        retry.max_retry_after = max_retry_after
        return retry

    def new(self, **kw: Any) -> Self:
        """A copy with ``kw`` changed, keeping the clock and the cap (urllib3 copies on each retry)."""
        retry = super().new(**kw)
        retry.clock = self.clock
        retry.max_retry_after = self.max_retry_after
        return retry

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        """The response's ``Retry-After`` in seconds (capped), ``None`` when absent or unreadable."""
        headers = response.headers
        return parse_retry_after(headers.get("Retry-After"), date=headers.get("Date"), cap=self.max_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        """``Retry-After`` in seconds; ``0`` (use the backoff) when unreadable."""
        return parse_retry_after(retry_after, cap=self.max_retry_after) or 0.0

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:
        """Wait for ``Retry-After`` on our clock; ``False`` when there is none."""
        delay = self.get_retry_after(response)
        if delay:
            self.clock.sleep(delay)
            return True
        return False

    def _sleep_backoff(self) -> None:
        backoff = self.get_backoff_time()
        if backoff > 0:
            self.clock.sleep(backoff)


class Client:
    """Shared settings and one pooled session for the requests to one API.

    ::

        api = Client("https://api.example.com", auth=BearerAuth(get_token), retries=2)
        flow = api.get("/users/{user_id}").capture("user", "$.data") >> api.post(
            "/audit", json=lambda ctx: {"user": ctx["user"]["id"]}
        )

    ``base_url``
        prefixed to relative request URLs;
    ``headers``
        sent with every request (a request's own headers win); ASCII ``str`` values;
    ``auth``
        a `BasicAuth`, `BearerAuth` or any `Auth`;
    ``timeout``
        seconds, or ``(connect, read)``; `DEFAULT_TIMEOUT` when not given;
    ``verify``
        TLS verification: ``True`` (default: certifi's CAs, or ``REQUESTS_CA_BUNDLE`` /
        ``CURL_CA_BUNDLE`` when ``trust_env``), ``False``, or the path of a CA bundle
        file or directory, which the environment never overrides;
    ``trust_env``
        read proxies (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``), the CA bundle
        variables and ``.netrc`` from the environment, once, when the session opens
        (default ``True``); ``False`` ignores them;
    ``max_body``
        the largest body, in bytes, a request of this client accepts (`BodyTooLarge`
        beyond it); ``None`` (default) sets no limit;
    ``retries``
        transport retries inside one call: a number (see `TransportRetry.of`) or a
        urllib3 ``Retry``; ``0`` (default) leaves retrying to the driver;
    ``limits``
        rate or concurrency limits entered around every request of this client;
    ``on_status``
        status overrides for every request (see `service_flow.http.status`);
    ``max_retry_after``
        the cap on a server's ``Retry-After``, in seconds;
    ``pool_size``
        connections kept per host (size it to the threads sharing the client);
    ``clock``
        what transport retries sleep on (a `FakeClock` in tests).
    """

    def __init__(  # noqa: PLR0913 - the settings of a client, all keyword-only
        self,
        base_url: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        timeout: Timeout | None = None,
        verify: Verify = True,
        trust_env: bool = True,
        max_body: int | None = None,
        retries: int | Urllib3Retry = 0,
        limits: Iterable[Limit] = (),
        on_status: StatusActions | None = None,
        max_retry_after: float = MAX_RETRY_AFTER,
        pool_size: int = 32,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        owner = type(self).__name__  # AsyncClient's errors name AsyncClient
        self.base_url = None if base_url is None else check_base_url(base_url, owner)
        self.headers: dict[str, str] = _checked_headers(headers, owner)
        self.auth = check_auth(auth, f"{owner}(auth=)")
        self.timeout = check_timeout(DEFAULT_TIMEOUT if timeout is None else timeout, owner)
        self.verify = check_verify(verify, owner)
        if not isinstance(trust_env, bool):
            msg = f"{owner}(trust_env=) takes True or False, got {trust_env!r}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self.trust_env = trust_env
        self.max_body = check_max_body(max_body, owner)
        self.limits: tuple[Limit, ...] = tuple(limits)
        self.status_map = StatusMap(on_status)
        if not _is_number(max_retry_after) or not 0 <= max_retry_after < math.inf:
            msg = f"{owner}(max_retry_after=) takes a finite number of seconds, zero or more, got {max_retry_after!r}"
            raise ConfigurationError(msg)
        self.max_retry_after = float(max_retry_after)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            msg = f"{owner}(pool_size=) takes a whole number of connections, at least 1, got {pool_size!r}"
            raise ConfigurationError(msg)
        self.pool_size = pool_size
        self.clock = clock
        if isinstance(retries, bool) or not isinstance(retries, (int, Urllib3Retry)) or retries is None:
            msg = f"{owner}(retries=) takes a number of retries or a urllib3 Retry, got {retries!r}"
            raise ConfigurationError(msg)
        if isinstance(retries, int):
            if retries < 0:
                msg = f"{owner}(retries=) must be zero or more, got {retries!r}"
                raise ConfigurationError(msg)
            retries = TransportRetry.of(retries, clock=clock, max_retry_after=max_retry_after) if retries else 0
        self.retries: int | Urllib3Retry = retries
        self._lock = threading.Lock()
        self._session: _Session | None = None

    # -- the session, a resource ------------------------------------------------------

    @property
    def session(self) -> _Session:
        """The pooled session, created on first use (thread-safe)."""
        session = self._session
        if session is None:
            with self._lock:
                session = self._session
                if session is None:
                    session = self._session = self._new_session()
        return session

    def _new_session(self) -> _Session:
        session = _Session(Environment(trust_env=self.trust_env))
        session.verify = session.environment.verify(self.verify)
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=self.pool_size, max_retries=self.retries
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def setup(self) -> None:
        """Open a fresh session, closing the one in use (a restart after `Fatal` calls this)."""
        with self._lock:
            old, self._session = self._session, self._new_session()
        if old is not None:
            old.close()

    def teardown(self) -> None:
        """Close the session and its pooled connections; the next request opens a new one."""
        with self._lock:
            old, self._session = self._session, None
        if old is not None:
            old.close()

    close = teardown

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.teardown()

    def __getstate__(self) -> dict[str, Any]:
        # Sessions and locks do not cross processes; the receiver opens its own.
        state = dict(self.__dict__)
        state["_lock"] = None
        state["_session"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client({_redact.url(self.base_url)!r})" if self.base_url else "Client()"

    # -- building requests ------------------------------------------------------------

    def request(self, method: str, url: str, **options: Any) -> Request:
        """A `Request` service sent through this client (options as for `Request`)."""
        from service_flow.http.request import Request  # request.py imports this module

        return Request(method, url, client=self, **options)

    def get(self, url: str, **options: Any) -> Request:
        """A GET `Request` through this client."""
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> Request:
        """A POST `Request` through this client."""
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Any) -> Request:
        """A PUT `Request` through this client."""
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Any) -> Request:
        """A PATCH `Request` through this client."""
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Any) -> Request:
        """A DELETE `Request` through this client."""
        return self.request("DELETE", url, **options)

    def head(self, url: str, **options: Any) -> Request:
        """A HEAD `Request` through this client."""
        return self.request("HEAD", url, **options)

    # -- sending ----------------------------------------------------------------------

    def send(self, out: Outgoing, *, auth: Auth | None = None, limits: Sequence[Limit] = ()) -> requests.Response:
        """Send ``out`` and return the response, its body not read yet (the one `requests` call of the package).

        The caller reads the body (`service_flow.http.request` does, within
        ``max_body``) and closes the response.  ``limits`` are entered around each
        attempt.  With ``auth``, a 401 lets it refresh its credential and the request is
        sent once more; the discarded response is closed.  Transport failures become
        `RetryableHTTPError` when sending again is safe, else `TransportError`.  One log
        event per request sent.
        """
        session = self._session or self.session
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            failure: BaseException | None = None
            token = _redact.sending.set(out.hidden) if out.hidden else None
            try:
                response = self._attempt(session, out, auth, limits)
            except OSError as error:  # requests' errors, and a CA bundle that cannot be read
                failure = self._transport_error(out, error, time.perf_counter() - started, attempt, auth)
            except FlowError:
                raise  # ours (a header refused) or a limit's: they name no secret
            except Exception as error:  # noqa: BLE001 - re-raised below, as a masked copy of itself
                failure = masked_error(out, error, auth)
            finally:
                if token is not None:
                    _redact.sending.reset(token)
            if failure is not None:
                # Raised outside the except clause: the chain holds masked copies only.
                raise failure
            status = response.status_code
            log_response(out, status, time.perf_counter() - started, attempt, response)
            # The headers sent are read back from the request: no local holds credentials.
            if status == 401 and auth is not None and attempt == 1 and auth.refresh(response.request.headers):  # noqa: PLR2004
                response.close()
                continue
            return response

    def read_error(self, out: Outgoing, error: Exception) -> Exception:
        """The error for a body that broke off or could not be decoded while it was read."""
        url = out.shown_url()
        secrets = secrets_of(out, None)
        reason = _redact.scrub(f"{type(error).__name__}: {error}".replace(out.url, url), secrets)[:300]
        log_request(_log.logger().warning, out, None, 0.0, 1, None, error=type(error).__name__)
        where: dict[str, Any] = {"method": out.method, "url": url}
        message = f"{out.method} {url}: reading the body failed: {reason}"
        failure: Exception
        if isinstance(error, (zlib.error, DecodeError)):
            failure = TransportError(message, **where)  # a bad encoding stays bad
        elif not out.idempotent:
            unsafe = f" (not retried: the server may have processed this {out.method})"
            failure = TransportError(message + unsafe, **where)
        else:
            failure = RetryableHTTPError(message, **where)
        # Raise it outside the except clause: the chain holds masked copies only.
        failure.__cause__ = failure.__context__ = _redact.masked_chain(error, secrets, {out.url: url})
        failure.__suppress_context__ = True
        return failure

    def _attempt(
        self, session: _Session, out: Outgoing, auth: Auth | None, limits: Sequence[Limit]
    ) -> requests.Response:
        if not limits:
            return self._call(session, out, auth)
        with contextlib.ExitStack() as stack:
            for limit in limits:
                stack.enter_context(limit)
            return self._call(session, out, auth)

    @staticmethod
    def _call(session: _Session, out: Outgoing, auth: Auth | None) -> requests.Response:
        headers = out.headers if auth is None else {**out.headers, **auth_headers(auth)}
        try:
            return _call(session, out, headers, auth)
        finally:
            del headers  # keeps credentials out of this frame's locals in tracebacks

    def _transport_error(
        self, out: Outgoing, error: OSError, elapsed: float, attempt: int, auth: Auth | None
    ) -> Exception:
        secrets = secrets_of(out, auth)
        url = out.shown_url()
        reason = _redact.scrub(f"{type(error).__name__}: {error}".replace(out.url, url), secrets)[:300]
        log_request(_log.logger().warning, out, None, elapsed, attempt, None, error=type(error).__name__)
        where: dict[str, Any] = {"method": out.method, "url": url}
        failure = self._classify(out, error, reason, where)
        failure.__cause__ = failure.__context__ = _redact.masked_chain(error, secrets, {out.url: url})
        failure.__suppress_context__ = True
        return failure

    @staticmethod
    def _classify(out: Outgoing, error: OSError, reason: str, where: dict[str, Any]) -> Exception:
        url = where["url"]
        if isinstance(error, requests.exceptions.RetryError):
            return RetriesExhausted(f"{out.method} {url}: transport retries ran out ({reason})", **where)
        never_sent = isinstance(error, requests.ConnectTimeout) or _never_connected(error)
        transient = isinstance(
            error, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        ) and not isinstance(error, requests.exceptions.SSLError)  # a certificate does not fix itself
        if transient and (never_sent or out.idempotent):
            return RetryableHTTPError(f"{out.method} {url}: {reason}", **where)
        if transient:
            reason += f" (not retried: the server may have processed this {out.method})"
        # Otherwise a bad URL, header or body, a certificate: sending it again changes nothing.
        return TransportError(f"{out.method} {url}: {reason}", **where)


def _call(session: _Session, out: Outgoing, headers: Mapping[str, str], auth: Auth | None) -> requests.Response:
    """One request on ``session``: prepared, then sent with the environment read when it opened.

    What ``requests.Session.request`` does, less reading the environment each time.
    """
    environment = session.environment
    if environment.netrc and auth is None:
        headers = environment.with_netrc(out.url, headers)
    prepared = session.prepare_request(
        requests.Request(
            out.method,
            out.url,
            headers=headers or None,  # None skips requests' header merging, a measurable cost
            json=out.json,
            data=out.data or {},
            hooks=_FOLLOWING if out.allow_redirects else None,
        )
    )
    return session.send(
        prepared,
        timeout=out.timeout,
        allow_redirects=out.allow_redirects,
        proxies=environment.proxies_for(out.url),
        verify=session.verify if out.verify is None else environment.verify(out.verify),
        stream=True,  # the body is read by the caller, within max_body
        cert=None,
    )


def _bound_redirect_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A redirect's body is never used: requests would read all of it, we read a prefix at most."""
    del args, kwargs
    if response.is_redirect:
        _body.read_prefix(response)
    return response


_FOLLOWING: Final = {"response": [_bound_redirect_body]}


class Environment:
    """What requests reads from the environment on every request, read once (``trust_env``).

    Proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, and ``NO_PROXY`` checked once
    per scheme and host), the CA bundle (``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``)
    used when ``verify`` is ``True``, and the credentials of the ``.netrc`` file.
    """

    __slots__ = ("_by_origin", "ca_bundle", "netrc", "no_proxy", "proxies")

    _MAX_ORIGINS = 1024

    def __init__(self, *, trust_env: bool) -> None:
        self.proxies: dict[str, str] = {}
        self.no_proxy = ""
        self.ca_bundle: str | None = None
        self.netrc: dict[str, tuple[str, str]] | None = None
        self._by_origin: dict[str, dict[str, str]] = {}
        if not trust_env:
            return
        found = getproxies()
        self.no_proxy = found.pop("no", "")
        self.proxies = found
        self.ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
        self.netrc = _read_netrc()

    def verify(self, verify: bool | str) -> bool | str:
        """What to verify with: an explicit ``False`` or path as given, ``True`` as the environment says."""
        return (self.ca_bundle or True) if verify is True else verify

    def proxies_for(self, url: str) -> dict[str, str]:
        """The proxies for ``url`` (none when ``NO_PROXY`` covers its host)."""
        if not self.proxies:
            return self.proxies
        origin = url.split("/", 3)
        key = "/".join(origin[:3])
        found = self._by_origin.get(key)
        if found is None:
            bypass = requests.utils.should_bypass_proxies(key, no_proxy=self.no_proxy)
            found = {} if bypass else self.proxies
            if len(self._by_origin) >= self._MAX_ORIGINS:
                self._by_origin.clear()
            self._by_origin[key] = found
        return found

    def with_netrc(self, url: str, headers: Mapping[str, str]) -> Mapping[str, str]:
        """``headers`` with ``.netrc``'s credentials for the host, unless they authenticate already."""
        if self.netrc is None or any(name.lower() == "authorization" for name in headers):
            return headers
        found = self.netrc.get((urlsplit(url).hostname or "").lower())
        if found is None:
            found = self.netrc.get("default")
        return headers if found is None else {**headers, "Authorization": _basic_auth_str(*found)}


def _read_netrc() -> dict[str, tuple[str, str]] | None:
    """The ``.netrc`` credentials by host (``NETRC``, else ``~/.netrc`` or ``~/_netrc``), as requests reads them."""
    netrc_file = os.environ.get("NETRC")
    places = (netrc_file,) if netrc_file else tuple(f"~/{name}" for name in requests.utils.NETRC_FILES)
    for place in places:
        path = Path(place).expanduser()
        if not path.is_file():
            continue
        try:
            parsed = netrc.netrc(str(path))
        except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
            return None  # as requests: an unreadable file gives no credentials
        return {
            host.lower(): (login or account or "", password or "")
            for host, (login, account, password) in parsed.hosts.items()
        }
    return None


def forget_frames(error: BaseException) -> None:
    """Clear the locals of the finished frames in ``error``'s tracebacks (its causes' too).

    An error kept as a dead letter would otherwise keep every response, session and
    header those frames held, and their connections.
    """
    seen: BaseException | None = error
    for _ in range(16):
        if seen is None:
            return
        traceback.clear_frames(seen.__traceback__)
        seen = seen.__cause__ or seen.__context__


T = TypeVar("T")


def forgetting(call: Callable[[Any, dict[str, Any]], T]) -> Callable[[Any, dict[str, Any]], T]:
    """Wrap a request service's ``__call__``: an error it raises keeps no frame's locals.

    The wrapper drops ``context`` too, so tracebacks rendered with locals show none of its values.
    """

    @functools.wraps(call)
    def forgets(self: Any, context: dict[str, Any]) -> T:
        try:
            return call(self, context)
        except Exception as error:
            forget_frames(error)  # a kept error keeps no response, session or header
            del context  # nor the context's values
            raise

    return forgets


def aforgetting(
    call: Callable[[Any, dict[str, Any]], Awaitable[T]],
) -> Callable[[Any, dict[str, Any]], Coroutine[Any, Any, T]]:
    """`forgetting` for an ``async def __call__``."""

    @functools.wraps(call)
    async def forgets(self: Any, context: dict[str, Any]) -> T:
        try:
            return await call(self, context)
        except Exception as error:
            forget_frames(error)
            del context
            raise

    return forgets


def _never_connected(error: OSError) -> bool:
    """Whether the connection was never made, so the server cannot have seen the request."""
    cause = error.args[0] if error.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, (NewConnectionError, ConnectTimeoutError))


def check_verify(verify: Any, owner: str) -> bool | str:
    """``verify`` validated: ``True``, ``False`` or the path of an existing CA file or directory."""
    if isinstance(verify, bool):
        return verify
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if isinstance(path, str) and path and Path(path).exists():
            if Path(path).is_file():
                stat = Path(path).stat()
                problem = _ca_file_problem(path, stat.st_mtime_ns, stat.st_size)
                if problem is not None:
                    msg = f"{owner}(verify=) names a file that is not a CA bundle: {verify!r} ({problem})"
                    raise ConfigurationError(msg)
            return path
        msg = f"{owner}(verify=) names no CA bundle file or directory: {verify!r}"
        raise ConfigurationError(msg)
    msg = f"{owner}(verify=) takes True, False or the path of a CA bundle file or directory, got {verify!r}"
    raise ConfigurationError(msg)


@functools.lru_cache(maxsize=64)
def _ca_file_problem(path: str, mtime: int, size: int) -> str | None:
    """Why the file at ``path`` cannot serve as CAs (``None`` when it can); cached per version of the file."""
    del mtime, size  # part of the cache key: a file rewritten is checked again
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def check_max_body(max_body: Any, owner: str) -> int | None:
    """``max_body`` validated: a positive number of bytes, or ``None`` for no limit."""
    if max_body is None:
        return None
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
        msg = f"{owner}(max_body=) takes a positive number of bytes or None, got {max_body!r}"
        raise ConfigurationError(msg)
    return max_body


def secrets_of(out: Outgoing, auth: Auth | None) -> list[str]:
    """``out.secrets(auth)``, without the auth's when it is what failed."""
    try:
        return out.secrets(auth)
    except Exception:  # noqa: BLE001 - the auth's own error is being reported
        return out.secrets()


def masked_error(out: Outgoing, error: Exception, auth: Auth | None) -> BaseException:
    """An error that came out of the transport's code, as a masked copy of itself.

    Its type is kept (``except ValueError`` still works); its traceback, whose frames
    inside requests or httpx hold the headers sent, is not.
    """
    return _redact.masked_chain(error, secrets_of(out, auth), {out.url: out.shown_url()})


def auth_headers(auth: Auth) -> Mapping[str, str]:
    """``auth``'s headers, refused when a transport could not send them (the values never shown)."""
    headers = auth.headers()
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            del headers, value  # not in this frame's locals
            msg = f"{type(auth).__name__}: {problem}"
            raise RequestBuildError(msg, part=f"header {name!r}")
    return headers


class _Session(requests.Session):
    """requests' session, dropping every sensitive header on a redirect to another origin.

    requests drops ``Authorization`` only; ``X-Api-Key``, ``Proxy-Authorization``,
    cookies and the names given to `add_sensitive_names` go too.  The environment comes
    from an `Environment` read once, not from ``os.environ`` on every request.
    """

    def __init__(self, environment: Environment) -> None:
        super().__init__()
        self.environment = environment
        self.trust_env = False  # our Environment already read it, once

    def rebuild_proxies(self, prepared_request: requests.PreparedRequest, proxies: dict[str, str] | None) -> Any:
        """On a redirect, the proxies for the new URL (``NO_PROXY`` included)."""
        del proxies
        proxies = self.environment.proxies_for(prepared_request.url or "")
        return super().rebuild_proxies(prepared_request, proxies)  # type: ignore[no-untyped-call]

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """Requests' rule for ``Authorization``, then ours for the other sensitive headers."""
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        if response.request.url and prepared_request.url and crosses_origin(response.request.url, prepared_request.url):
            for name in [name for name in prepared_request.headers if _redact.is_sensitive_header(name)]:
                del prepared_request.headers[name]


_DEFAULT_PORTS = {"http": 80, "https": 443}


def crosses_origin(old: str, new: str) -> bool:
    """Whether a redirect from ``old`` to ``new`` leaves the origin (scheme, host, port).

    As in requests, ``http`` to ``https`` on the same host and default ports does not.
    """
    before, after = urlsplit(old), urlsplit(new)
    if (before.hostname or "").lower() != (after.hostname or "").lower():
        return True
    old_port = before.port or _DEFAULT_PORTS.get(before.scheme)
    new_port = after.port or _DEFAULT_PORTS.get(after.scheme)
    if before.scheme == "http" and after.scheme == "https" and old_port == 80 and new_port == 443:  # noqa: PLR2004
        return False
    return before.scheme != after.scheme or old_port != new_port


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VISIBLE = re.compile(r"(?:[\x21-\x7e][\t\x20-\x7e]*)?\Z")


def header_problem(name: object, value: object) -> str | None:
    """What makes header ``name: value`` unsendable, never showing the value; ``None`` when fine."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        return f"{name!r} is not a header name (ASCII letters, digits and !#$%&'*+-.^_`|~ only)"
    if not isinstance(value, str):
        return f"header {name!r} takes a str value, got a {type(value).__name__}"
    if _VISIBLE.match(value):
        return None
    at = next((i for i, char in enumerate(value) if not (" " <= char <= "~" or (char == "\t" and i))), 0)
    char = value[at]
    what = (
        "a non-ASCII character"
        if char > "~"
        else "a line break"
        if char in "\r\n"
        else "a control character"
        if char not in " \t"
        else "leading whitespace"
    )
    return f"the value of header {name!r} has {what} at position {at} (value not shown)"


def _checked_headers(headers: Any, owner: str) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        msg = f"{owner}(headers=) takes a mapping of header names to str values, got {type(headers).__name__}"
        raise ConfigurationError(msg)
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            msg = f"{owner}(headers=): {problem}"
            raise ConfigurationError(msg)
    return dict(headers)


def check_base_url(base_url: Any, owner: str) -> str:
    """``base_url`` without its trailing slash, refused unless an absolute http(s) URL."""
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        shown = _redact.url(base_url) if isinstance(base_url, str) else repr(base_url)
        msg = f"{owner}(base_url=) takes an absolute http or https URL, like 'https://api.example.com', got {shown}"
        raise ConfigurationError(msg)
    return str(base_url).rstrip("/")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_timeout(timeout: Any, owner: str) -> float | tuple[float, float]:
    """``timeout`` validated: positive seconds, or a pair of them; never ``None``."""
    values = timeout if isinstance(timeout, tuple) else (timeout,)
    if len(values) not in (1, 2) or not all(_is_number(v) for v in values) or not all(0 < v < math.inf for v in values):
        msg = f"{owner}(timeout=) takes positive, finite seconds or a (connect, read) pair of them, got {timeout!r}"
        raise ConfigurationError(msg)
    return (float(values[0]), float(values[1])) if len(values) == 2 else float(values[0])  # noqa: PLR2004


def log_response(out: Outgoing, status: int, elapsed: float, attempt: int, response: Any) -> None:
    """The ``http.request`` event of a response: debug (when enabled) below 400, else a warning."""
    if status < 400:  # noqa: PLR2004
        log = debug_logger()
        if log is not None:
            log_request(log.debug, out, status, elapsed, attempt, response)
    else:
        log_request(_log.logger().warning, out, status, elapsed, attempt, response)


def log_request(
    emit: Any,
    out: Outgoing,
    status: int | None,
    elapsed: float,
    attempt: int,
    response: Any,
    error: str | None = None,
) -> None:
    """The one ``http.request`` event of a request sent: method, masked URL, status, duration, attempt."""
    fields: dict[str, Any] = {
        "method": out.method,
        "url": out.shown_url(),
        "status": status,
        "duration_ms": round(elapsed * 1000, 3),
        "attempt": attempt,
    }
    if out.service:
        fields["service"] = out.service
    raw = getattr(response, "raw", None)
    history = getattr(getattr(raw, "retries", None), "history", None)
    if history:
        fields["transport_retries"] = len(history)
    if error is not None:
        fields["error"] = error
    emit("http.request", **fields)
