"""What a response status means to a flow, and how long a server asks us to wait.

By default (`DEFAULT_ACTIONS`):

============================  ===========================================================
status                        action
============================  ===========================================================
1xx, 2xx, 3xx                 ``ok``: checks and captures run
429                           ``retry``: the server refused to process it, safe for any method
5xx                           ``retry`` for idempotent methods (GET, HEAD, OPTIONS, PUT,
                              DELETE, TRACE); ``fail`` for POST and PATCH unless the
                              request is marked ``idempotent=True``
other 4xx                     ``fail``: a `ResponseError` carrying the response
anything else                 ``fail``
============================  ===========================================================

Override per client or per request with ``on_status={404: "ok", 409: "retry",
"5xx": "fail", 401: "fatal"}`` (a status, or a class as ``"4xx"``); actions are
`Action` members or their names: ``ok``, ``retry``, ``fail``, ``fatal``, ``stop``.
An explicit mapping applies to every method: you asked for it.

``Retry-After`` (on any response mapped to ``retry``; 429 and 503 send it) becomes the
``delay`` of the `Retry` raised, read by `parse_retry_after`: delta-seconds or an
HTTP-date, capped at ``max_retry_after`` (`MAX_RETRY_AFTER`, 120 s, by default) so a
server cannot park a worker for a day; a negative or unreadable value is ignored (the
retry policy's backoff applies) and a date in the past means "now".
"""

from __future__ import annotations

import email.utils
import enum
import time
from collections.abc import Mapping
from typing import Final, Union

from typing_extensions import TypeAlias

from service_flow.exceptions import ConfigurationError

__all__ = [
    "IDEMPOTENT_METHODS",
    "MAX_RETRY_AFTER",
    "Action",
    "StatusActions",
    "StatusMap",
    "parse_retry_after",
]

MAX_RETRY_AFTER: Final = 120.0
"""The longest ``Retry-After`` honoured by default, in seconds; longer values are capped."""

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
"""Methods that may be sent again after a 5xx or a lost response (RFC 9110, 9.2.2)."""


class Action(str, enum.Enum):
    """What a response status makes the request service do."""

    OK = "ok"
    """Run the checks and captures."""
    RETRY = "retry"
    """Raise `RetryableHTTPError` (a `Retry`), with ``Retry-After`` as its delay."""
    FAIL = "fail"
    """Raise `ResponseError` carrying the response: the input goes to the dead letters."""
    FATAL = "fatal"
    """Raise `FatalHTTPError` (a `Fatal`): the driver restarts the resources."""
    STOP = "stop"
    """Raise `HTTPStopped` (a `StopFlow`): this input is done, not a failure."""


StatusActions: TypeAlias = Mapping[Union[int, str], Union[Action, str]]
"""The type of an ``on_status`` override: ``{404: "ok", "5xx": "fail"}``."""


class StatusMap:
    """The action for each status: defaults, then overrides by class, then by status.

    >>> actions = StatusMap({404: "ok", "5xx": "fail"})
    >>> actions.action(404, idempotent=True), actions.action(503, idempotent=True)
    (<Action.OK: 'ok'>, <Action.FAIL: 'fail'>)
    >>> StatusMap().action(500, idempotent=False)
    <Action.FAIL: 'fail'>
    """

    __slots__ = ("by_class", "by_status")

    def __init__(self, overrides: StatusActions | None = None) -> None:
        self.by_status: dict[int, Action] = {}
        self.by_class: dict[int, Action] = {}
        for key, value in (overrides or {}).items():
            action = _action(value, key)
            if isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 999:  # noqa: PLR2004
                self.by_status[key] = action
            elif isinstance(key, str) and len(key) == 3 and key[0].isdigit() and key[1:].lower() == "xx":  # noqa: PLR2004
                self.by_class[int(key[0])] = action
            else:
                msg = f"on_status keys are statuses (404) or classes ('4xx'), got {key!r}"
                raise ConfigurationError(msg)

    def merged(self, overrides: StatusActions | None) -> StatusMap:
        """A new map: this one with ``overrides`` on top."""
        merged = StatusMap(overrides)
        merged.by_status = {**self.by_status, **merged.by_status}
        merged.by_class = {**self.by_class, **merged.by_class}
        return merged

    def action(self, status: int, *, idempotent: bool) -> Action:
        """The action for ``status`` on a request that is (or is not) ``idempotent``."""
        action = self.by_status.get(status)
        if action is not None:
            return action
        action = self.by_class.get(status // 100)
        if action is not None:
            return action
        if 100 <= status < 400:  # noqa: PLR2004
            return Action.OK
        if status == 429:  # noqa: PLR2004 - refused unprocessed: any method may retry
            return Action.RETRY
        if 500 <= status < 600:  # noqa: PLR2004
            return Action.RETRY if idempotent else Action.FAIL
        return Action.FAIL

    def __bool__(self) -> bool:
        return bool(self.by_status or self.by_class)

    def __repr__(self) -> str:
        items = [f"{k}: {v.value!r}" for k, v in self.by_status.items()]
        items += [f"'{k}xx': {v.value!r}" for k, v in self.by_class.items()]
        return f"StatusMap({{{', '.join(items)}}})"


def _action(value: Action | str, key: object) -> Action:
    try:
        return Action(value)
    except ValueError:
        names = ", ".join(repr(a.value) for a in Action)
        msg = f"on_status[{key!r}] must be one of {names}, got {value!r}"
        raise ConfigurationError(msg) from None


def parse_retry_after(
    value: str | None,
    *,
    date: str | None = None,
    now: float | None = None,
    cap: float = MAX_RETRY_AFTER,
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value; ``None`` when there is none to honour.

    ``value`` is delta-seconds or an HTTP-date.  A date is measured against the
    response's ``Date`` header when given (the server's clock, immune to skew), else
    against ``now`` (Unix time, default `time.time`).  The result is capped at ``cap``;
    a negative or unreadable value gives ``None``; a date already past gives ``0``.

    >>> parse_retry_after("30"), parse_retry_after("86400"), parse_retry_after("-5")
    (30.0, 120.0, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", date="Wed, 21 Oct 2015 07:28:00 GMT")
    30.0
    """
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value, date, now)
        if seconds is None:
            return None
        seconds = max(seconds, 0.0)
    else:
        if seconds != seconds or seconds < 0:  # NaN or negative: not a delay we can honour  # noqa: PLR0124
            return None
    return min(seconds, cap)


def _seconds_until(value: str, date: str | None, now: float | None) -> float | None:
    when = _http_date(value)
    if when is None:
        return None
    reference = _http_date(date) if date else None
    if reference is None:
        reference = time.time() if now is None else now
    return when - reference


def _http_date(value: str) -> float | None:
    if value.count("GMT") > 1:  # repeated headers joined with ", ": the first one counts
        value = value[: value.index("GMT") + 3]
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    try:
        return float(email.utils.mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None
