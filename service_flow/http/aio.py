"""The async HTTP services, on `httpx` (install the ``async`` extra: ``pip install service-flow[async]``).

::

    api = AsyncClient("https://api.example.com", auth=BearerAuth(get_token), limits=[RateLimit(10, per=1)])
    flow = api.post("/jobs", json=...).capture("job_id", "$.id") >> AsyncPoll(
        api.get("/jobs/{job_id}").capture("job", "$"),
        until=JsonPath("$.status") == "SUCCESS",
        timeout=60,
    )
    result = await flow({})

`AsyncRequest` and `AsyncPoll` take exactly the options of `Request` and `Poll`: they
*are* those classes with an ``async`` ``__call__``.  Building the request from the
context and judging the response are the very same code; only sending differs
(`AsyncClient.asend`, with ``httpx``).  Limits are entered with ``async with``, so a
task waiting for a `RateLimit` or a `ConcurrencyLimit` never blocks the event loop.

The ``httpx.AsyncClient`` behind an `AsyncClient` belongs to the event loop that first
used it; a run in another loop opens its own (and a request with its own ``verify``, one
for that setting).  Close them with ``await api.aclose()`` (or ``async with api:``)
before its loop ends.  httpx reads the environment (proxies, ``NO_PROXY``,
``SSL_CERT_FILE``, ``SSL_CERT_DIR``) once, when it opens, unless ``trust_env=False``; an
explicit ``verify`` (``False`` or a CA path, made an SSL context) always wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import ssl
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from service_flow import _log
from service_flow.exceptions import ConfigurationError, FlowError
from service_flow.http import _body, _redact
from service_flow.http.client import (
    Client,
    aforgetting,
    auth_headers,
    crosses_origin,
    log_request,
    log_response,
    masked_error,
    secrets_of,
)
from service_flow.http.errors import RetryableHTTPError, TransportError
from service_flow.http.poll import CLOSE, SEND, Poll
from service_flow.http.request import Request

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx
    from typing_extensions import Self

    from service_flow.http.auth import Auth
    from service_flow.http.client import Limit
    from service_flow.http.request import Outgoing

__all__ = ["AsyncClient", "AsyncPoll", "AsyncRequest"]

_redact.install_log_filter()  # httpx's own INFO line per request gets a masked URL
_ORIGIN = "service_flow.origin"


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:  # pragma: no cover - the dev extra installs it
        msg = "the async HTTP services need httpx: pip install 'service-flow[async]'"
        raise ConfigurationError(msg) from None
    return httpx


class AsyncClient(Client):
    """A `Client` sending with ``httpx.AsyncClient``: same settings, same status mapping.

    ``retries`` counts connection attempts retried by httpx's transport (httpx retries
    only failed connections, never a response); urllib3 ``Retry`` objects do not apply.
    Its requests (``api.get(...)``) are `AsyncRequest` services.
    """

    def __init__(self, base_url: str | None = None, *, retries: int = 0, **options: Any) -> None:
        _httpx()
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            msg = f"AsyncClient(retries=) takes a number of connection retries (0 or more), got {retries!r}"
            raise ConfigurationError(msg)
        super().__init__(base_url, **options)
        self.connect_retries = retries
        # The httpx clients of one event loop, one per verify setting in use.
        self._async: tuple[asyncio.AbstractEventLoop, dict[bool | str, httpx.AsyncClient]] | None = None

    def _client(self, verify: bool | str | None = None) -> httpx.AsyncClient:
        verify = self.verify if verify is None else verify
        loop = asyncio.get_running_loop()
        current = self._async
        if current is not None and current[0] is loop:
            client = current[1].get(verify)
            if client is not None:
                return client
        with self._lock:
            current = self._async
            if current is None or current[0] is not loop:
                current = self._async = (loop, {})
            client = current[1].get(verify)
            if client is None:
                client = current[1][verify] = self._opened(verify)
        return client

    def _opened(self, verify: bool | str) -> httpx.AsyncClient:
        """`_new_client`, its refusals (a proxy scheme httpx cannot use, socks without socksio) as ours."""
        failure = None
        try:
            return self._new_client(verify)
        except (ValueError, ImportError) as error:
            reason = _redact.scrub(f"{type(error).__name__}: {error}", ())[:300]
            hint = " (a proxy from the environment? trust_env=False ignores them)" if self.trust_env else ""
            failure = TransportError(f"{type(self).__name__}: httpx cannot open a client{hint}: {reason}")
        raise failure  # outside the except clause: no chain holding the environment's values

    def _new_client(self, verify: bool | str) -> httpx.AsyncClient:
        lib = _httpx()
        tls = _ssl_context(verify) if isinstance(verify, str) else verify

        def transport(proxy: str | None = None) -> httpx.AsyncHTTPTransport:
            return lib.AsyncHTTPTransport(  # type: ignore[no-any-return]
                retries=self.connect_retries,
                verify=tls,
                trust_env=self.trust_env,
                proxy=None if proxy is None else lib.Proxy(proxy),
                limits=lib.Limits(max_connections=self.pool_size, max_keepalive_connections=self.pool_size),
            )

        # httpx ignores the environment's proxies once given a transport: mount them ourselves.
        proxies = _environment_proxies() if self.trust_env else {}
        mounts = {pattern: None if url is None else transport(url) for pattern, url in proxies.items()}
        client: httpx.AsyncClient = lib.AsyncClient(
            transport=transport(),
            mounts=mounts,
            verify=tls,
            trust_env=self.trust_env,
            event_hooks={"request": [_keep_secrets_at_origin], "response": [_bound_redirect_body]},
        )
        return client

    async def aclose(self) -> None:
        """Close the ``httpx`` clients and their connections (call it in the loop that used them)."""
        with self._lock:
            current, self._async = self._async, None
        if current is not None:
            for client in current[1].values():
                await client.aclose()

    def setup(self) -> None:
        """Drop the ``httpx`` client: the next request opens a fresh one (a restart after `Fatal`)."""
        self.teardown()

    def teardown(self) -> None:
        """Close the ``httpx`` client: at once when called in its loop's thread, else on that loop."""
        with self._lock:
            current, self._async = self._async, None
        if current is None:
            return
        loop, clients = current
        if loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for client in clients.values():
            if running is loop:
                task = loop.create_task(client.aclose())
                _PENDING.add(task)
                task.add_done_callback(_PENDING.discard)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            else:
                loop.run_until_complete(client.aclose())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_async"] = None
        return state

    def request(self, method: str, url: str, **options: Any) -> AsyncRequest:
        """An `AsyncRequest` sent through this client."""
        return AsyncRequest(method, url, client=self, **options)

    def get(self, url: str, **options: Any) -> AsyncRequest:
        """A GET `AsyncRequest` through this client."""
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> AsyncRequest:
        """A POST `AsyncRequest` through this client."""
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Any) -> AsyncRequest:
        """A PUT `AsyncRequest` through this client."""
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Any) -> AsyncRequest:
        """A PATCH `AsyncRequest` through this client."""
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Any) -> AsyncRequest:
        """A DELETE `AsyncRequest` through this client."""
        return self.request("DELETE", url, **options)

    def head(self, url: str, **options: Any) -> AsyncRequest:
        """A HEAD `AsyncRequest` through this client."""
        return self.request("HEAD", url, **options)

    async def asend(self, out: Outgoing, *, auth: Auth | None = None, limits: Sequence[Limit] = ()) -> httpx.Response:
        """Send ``out`` with ``httpx`` and return the response, its body not read yet; the async `Client.send`.

        The caller reads the body (within ``max_body``) and closes the response.

        ``limits`` are entered (``async with`` when they support it) around each attempt;
        a 401 lets ``auth`` refresh once; transport failures become `RetryableHTTPError`
        or `TransportError` by the same rules as `Client.send`.
        """
        httpx = _httpx()
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            failure: BaseException | None = None
            token = _redact.sending.set(out.hidden) if out.hidden else None
            try:
                # Opening the httpx client loads the CAs: a bundle gone or unreadable fails here.
                response = await self._aattempt(self._client(out.verify), out, auth, limits)
            except (httpx.TransportError, httpx.InvalidURL, OSError) as error:  # OSError: an ssl error unwrapped
                failure = self._async_transport_error(out, error, time.perf_counter() - started, attempt, auth)
            except FlowError:
                raise  # ours (a header refused) or a limit's: they name no secret
            except Exception as error:  # noqa: BLE001 - re-raised below, as a masked copy of itself
                failure = masked_error(out, error, auth)
            finally:
                if token is not None:
                    _redact.sending.reset(token)
            if failure is not None:
                raise failure  # outside the except clause: the chain holds masked copies only
            status = response.status_code
            log_response(out, status, time.perf_counter() - started, attempt, response)
            # The headers sent are read back from the request: no local holds credentials.
            if status == 401 and auth is not None and attempt == 1 and auth.refresh(response.request.headers):  # noqa: PLR2004
                await response.aclose()
                continue
            return response

    async def _aattempt(
        self, client: httpx.AsyncClient, out: Outgoing, auth: Auth | None, limits: Sequence[Limit]
    ) -> httpx.Response:
        if not limits:
            return await self._acall(client, out, auth)
        async with contextlib.AsyncExitStack() as stack:
            for limit in limits:
                if hasattr(limit, "__aenter__"):
                    await stack.enter_async_context(limit)  # type: ignore[arg-type]
                else:
                    stack.enter_context(limit)
            return await self._acall(client, out, auth)

    @staticmethod
    async def _acall(client: httpx.AsyncClient, out: Outgoing, auth: Auth | None) -> httpx.Response:
        timeout = out.timeout
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        data, content = _httpx_body(out.data)
        headers = out.headers if auth is None else {**out.headers, **auth_headers(auth)}
        if isinstance(out.data, (list, tuple)) and not any(name.lower() == "content-type" for name in headers):
            headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        try:
            request = client.build_request(
                out.method,
                out.url,
                headers=headers,
                json=out.json,
                data=data,
                content=content,
                timeout=_httpx().Timeout(read, connect=connect),
            )
        finally:
            del headers, data, content  # keeps credentials out of this frame's locals in tracebacks
        # Streamed: the body is read by the caller, within max_body.
        token = _FOLLOWING.set(out.allow_redirects)
        try:
            return await client.send(request, stream=True, follow_redirects=out.allow_redirects)
        finally:
            _FOLLOWING.reset(token)

    def read_error(self, out: Outgoing, error: Exception) -> Exception:
        """The error for a body that broke off or could not be decoded while it was read."""
        if isinstance(error, _httpx().DecodingError):
            error = zlib.error(str(error))  # not transient: Client.read_error says so
        return super().read_error(out, error)

    def _async_transport_error(
        self, out: Outgoing, error: Exception, elapsed: float, attempt: int, auth: Auth | None
    ) -> Exception:
        secrets = secrets_of(out, auth)
        url = out.shown_url()
        reason = _redact.scrub(f"{type(error).__name__}: {error}".replace(out.url, url), secrets)[:300]
        log_request(_log.logger().warning, out, None, elapsed, attempt, None, error=type(error).__name__)
        where: dict[str, Any] = {"method": out.method, "url": url}
        failure = self._classify_async(out, error, reason, where)
        failure.__cause__ = failure.__context__ = _redact.masked_chain(error, secrets, {out.url: url})
        failure.__suppress_context__ = True
        return failure

    @staticmethod
    def _classify_async(out: Outgoing, error: Exception, reason: str, where: dict[str, Any]) -> Exception:
        httpx = _httpx()
        url = where["url"]
        if _caused_by(error, ssl.SSLError):  # a certificate does not fix itself
            return TransportError(f"{out.method} {url}: {reason}", **where)
        never_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        transient = isinstance(error, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))
        if transient and (never_sent or out.idempotent):
            return RetryableHTTPError(f"{out.method} {url}: {reason}", **where)
        if transient:
            reason += f" (not retried: the server may have processed this {out.method})"
        return TransportError(f"{out.method} {url}: {reason}", **where)


def _httpx_body(data: Any) -> tuple[Any, Any]:
    """``out.data`` as httpx's ``(data, content)``: it takes only a dict as a form, the rest as content."""
    if data is None or isinstance(data, Mapping):
        return data, None
    if isinstance(data, (list, tuple)):  # (name, value) pairs, repeated names kept
        return None, urlencode(list(data), doseq=True)
    if isinstance(data, (bytearray, memoryview)):
        return None, bytes(data)
    return None, data  # str, bytes, an async iterable


_PENDING: set[asyncio.Task[None]] = set()  # closing tasks, kept alive until done


_FOLLOWING: contextvars.ContextVar[bool] = contextvars.ContextVar("service_flow_following", default=False)
"""Whether the request being sent follows redirects (read by `_bound_redirect_body`)."""


async def _bound_redirect_body(response: httpx.Response) -> None:
    """A redirect followed: httpx would read its whole body, we read a prefix at most."""
    if response.has_redirect_location and _FOLLOWING.get():
        await _body.aread_prefix(response)


def _environment_proxies() -> dict[str, str | None]:
    """The environment's proxies as httpx mounts (``NO_PROXY`` hosts mapped to ``None``), as httpx reads them."""
    try:
        from httpx._utils import get_environment_proxies
    except ImportError:  # pragma: no cover - httpx moved it: no proxies rather than a crash
        return {}
    return get_environment_proxies()


def _ssl_context(path: str) -> ssl.SSLContext:
    """An SSL context trusting the CA bundle at ``path`` (a file or a directory)."""
    if Path(path).is_dir():
        return ssl.create_default_context(capath=path)
    return ssl.create_default_context(cafile=path)


async def _keep_secrets_at_origin(request: httpx.Request) -> None:
    """An httpx request hook: a redirect to another origin carries no sensitive header.

    httpx drops ``Authorization`` only.  The first request of a chain notes its origin
    in the extensions, which httpx hands on to each redirect.
    """
    url = request.url
    here = (url.scheme, url.host, url.port)
    origin = request.extensions.get(_ORIGIN)
    if origin is None:
        request.extensions[_ORIGIN] = here
        return
    if here == origin:
        return
    scheme, host, port = origin
    before = f"{scheme}://{host}" if port is None else f"{scheme}://{host}:{port}"
    if crosses_origin(before, str(url)):
        for name in [name for name in request.headers if _redact.is_sensitive_header(name)]:
            del request.headers[name]


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class AsyncRequest(Request):
    """A `Request` sent with ``httpx``: the same options, awaited (``client`` an `AsyncClient`)."""

    blocking: ClassVar[bool] = False
    streams: ClassVar[tuple[str, ...]] = ("__aiter__",)  # httpx's AsyncClient streams async iterables only

    def __init__(self, method: str, url: str, *, client: Client | None = None, **options: Any) -> None:
        client = AsyncClient() if client is None else client
        if not isinstance(client, AsyncClient):
            msg = f"AsyncRequest {method} {_redact.url(url)}: the client must be an AsyncClient, got {client!r}"
            raise ConfigurationError(msg)
        super().__init__(method, url, client=client, **options)
        self.async_client = client

    @aforgetting
    async def __call__(self, context: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Send the request built from ``context``; return the captured values."""
        out = self.build(context)
        del context  # its values (secrets too) stay out of tracebacks rendered with locals
        response = await self.async_client.asend(out, auth=self.auth, limits=self.limits)
        try:
            if self.accepts(response.status_code):
                await self.aread_body(response, out)
            else:
                await _body.aread_prefix(response)  # for the error's excerpt
            return self.interpret(response, out)
        finally:
            await response.aclose()

    async def aread_body(self, response: Any, out: Outgoing) -> None:
        """Read an httpx response's body whole, within ``max_body`` (`BodyTooLarge` beyond)."""
        failure = None
        try:
            whole = await _body.aread(response, out.max_body, head=out.method == "HEAD")
        except (_httpx().RequestError, zlib.error) as error:
            failure = self.async_client.read_error(out, error)
        if failure is not None:  # raised outside the except clause: its chain is masked copies only
            await response.aclose()
            raise failure
        if not whole:
            raise self.too_large(response, out)

    async def aread_polled(self, response: Any, out: Outgoing) -> None:
        """Read a polled httpx response: as `aread_body`, or bounded as `Request.read_polled` says."""
        if out.max_body is not None or self.accepts(response.status_code):
            await self.aread_body(response, out)
            return
        failure = None
        try:
            await _body.aread(response, _body.POLLED_BYTES, head=out.method == "HEAD")
        except (_httpx().RequestError, zlib.error) as error:
            failure = self.async_client.read_error(out, error)
        if failure is not None:  # raised outside the except clause: its chain is masked copies only
            await response.aclose()
            raise failure

    def _replace(self, **changes: Any) -> AsyncRequest:
        config = {**self._config, **changes}
        return AsyncRequest(config.pop("method"), config.pop("url"), **config)

    def __reduce__(self) -> tuple[Any, ...]:
        config = dict(self._config)
        return (_rebuild, (config.pop("method"), config.pop("url"), config))

    def __repr__(self) -> str:
        return f"<AsyncRequest {self.name}>"


def _rebuild(method: str, url: str, config: dict[str, Any]) -> AsyncRequest:
    return AsyncRequest(method, url, **config)


class AsyncPoll(Poll):
    """A `Poll` of an `AsyncRequest`: the same options, awaited; waits suspend the task."""

    blocking: ClassVar[bool] = False

    @staticmethod
    def _check_request(request: object) -> None:
        if not isinstance(request, AsyncRequest):
            hint = " (use Poll for a Request)" if isinstance(request, Request) else ""
            msg = f"AsyncPoll polls an AsyncRequest, got {request!r}{hint}"
            raise ConfigurationError(msg)

    @aforgetting
    async def __call__(self, context: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Poll with the request built from ``context``; return its captures from the final response."""
        out = self.request.build(context)
        del context  # its values (secrets too) stay out of tracebacks rendered with locals
        request = self.request
        assert isinstance(request, AsyncRequest)  # noqa: S101 - checked when built
        send, read, auth, limits = request.async_client.asend, request.aread_polled, request.auth, request.limits
        loop = self._loop(out)  # the same loop as Poll's; only the acting differs
        command, value = next(loop)
        while True:
            result: Any = None
            try:
                if command is SEND:
                    result = await send(out, auth=auth, limits=limits)
                    await read(result, out)  # bounded; closes the response when it fails
                elif command is CLOSE:
                    await value.aclose()
                else:
                    await self.clock.asleep(value)
            except Exception as error:  # noqa: BLE001 - handed to the loop, which decides
                step = functools.partial(loop.throw, error)
            else:
                step = functools.partial(loop.send, result)
            try:
                command, value = step()
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<AsyncPoll {self.request.name} until {self.until!r}>"
