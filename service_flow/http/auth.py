"""Authentication for HTTP services: basic, bearer tokens, refresh-and-retry-once on 401.

An auth object gives the headers to send (`Auth.headers`) and, after a 401, may renew
its credential (`Auth.refresh`): when it says so, the request is sent once more with
the new headers; a second 401 is an ordinary response (mapped to ``fail`` by default).
The values of these headers are secrets: they are masked in every log line and error.
"""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Any, Callable, Union

from typing_extensions import Protocol, runtime_checkable

from service_flow.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Auth", "BasicAuth", "BearerAuth", "check_auth"]


@runtime_checkable
class Auth(Protocol):
    """What a client needs from an authentication scheme."""

    def headers(self) -> Mapping[str, str]:
        """The headers to add to a request (called for every request: keep it cheap)."""
        ...

    def refresh(self, sent: Mapping[str, str]) -> bool:
        """After a 401 to a request sent with headers ``sent``: renew, and say whether to retry once."""
        ...


def check_auth(auth: object, where: str) -> Auth | None:
    """``auth`` when it is ``None`` or an `Auth` (``headers()`` and ``refresh(sent)``), else `ConfigurationError`.

    ``where`` names the option in the message: ``"Client(auth=)"``.
    """
    if auth is None or isinstance(auth, Auth):
        return auth
    msg = (
        f"{where} takes a BasicAuth, a BearerAuth or an object with headers() and refresh(sent), "
        f"got {type(auth).__name__}"
    )
    raise ConfigurationError(msg)


# An auth object may also have ``secrets()``, returning the values (a password...) to mask
# in messages besides its headers' values: `BasicAuth` has one.


class BasicAuth:
    """HTTP basic authentication; the header is built once.

    >>> BasicAuth("ada", "s3cret").headers()
    {'Authorization': 'Basic YWRhOnMzY3JldA=='}
    """

    def __init__(self, username: str, password: str) -> None:
        if not isinstance(username, str) or not isinstance(password, str):
            msg = "BasicAuth(username, password) takes two strings"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}
        self._secrets = (password, f"{username}:{password}")
        self.username = username

    def secrets(self) -> tuple[str, ...]:
        """The password and ``user:password``: masked wherever a server echoes them."""
        return self._secrets

    def headers(self) -> Mapping[str, str]:
        """``Authorization: Basic ...``."""
        return self._headers

    def refresh(self, sent: Mapping[str, str]) -> bool:  # noqa: ARG002 - the protocol's signature
        """A password does not change by itself: never retry."""
        return False

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, '***')"


TokenSource = Union[str, Callable[[], str]]


class BearerAuth:
    """``Authorization: Bearer <token>``, the token given or fetched by a function.

    With a function, the token is fetched on first use and kept.  After a 401 the token
    is fetched again (``refresh``, default: the same function) and the request retried
    once.  Threads that hit the 401 together fetch one new token between them: a thread
    whose failed request carried an old token just retries with the current one.

    ::

        auth = BearerAuth(lambda: oauth.fetch_token()["access_token"])
        api = Client("https://api.example.com", auth=auth)
    """

    def __init__(self, token: TokenSource, *, refresh: Callable[[], str] | None = None) -> None:
        if not isinstance(token, str) and not callable(token):
            msg = f"BearerAuth(token) takes a string or a function returning one, got {type(token).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self._source = token
        self._refresh = refresh if refresh is not None else (None if isinstance(token, str) else token)
        self._lock = threading.Lock()
        self._headers: dict[str, str] | None = None if callable(token) else _bearer(token)

    def headers(self) -> Mapping[str, str]:
        """``Authorization: Bearer <token>``, fetching the token on first use."""
        headers = self._headers
        if headers is None:
            with self._lock:
                if self._headers is None:
                    source = self._source
                    assert callable(source)  # noqa: S101 - a string source sets _headers at once
                    self._headers = _bearer(source())
                headers = self._headers
        return headers

    def refresh(self, sent: Mapping[str, str]) -> bool:
        """Fetch a new token unless another thread already did; retry if the token changed."""
        if self._refresh is None:
            return False
        with self._lock:
            current = self._headers
            if current is not None and current.get("Authorization") != sent.get("Authorization"):
                return True  # refreshed meanwhile by another request
            fresh = _bearer(self._refresh())
            self._headers = fresh
            return current is None or fresh != current

    def __getstate__(self) -> dict[str, Any]:
        # A lock does not pickle, and a cached token should not travel: fetch it anew.
        state = dict(self.__dict__)
        del state["_lock"]
        if callable(self._source):
            state["_headers"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "BearerAuth('***')" if isinstance(self._source, str) else "BearerAuth(<token function>)"


def _bearer(token: str) -> dict[str, str]:
    if not isinstance(token, str) or not token:
        msg = f"a bearer token must be a non-empty string, got a {type(token).__name__}"
        raise ConfigurationError(msg)
    return {"Authorization": f"Bearer {token}"}
