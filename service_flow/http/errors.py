"""The errors HTTP services raise, all under `service_flow.FlowError`.

The tree::

    FlowError
    └── HTTPError                    base: ``method``, ``url`` (secrets masked), ``response``
        ├── RetryableHTTPError       also a `Retry`: 429, 5xx of an idempotent request, a
        │   │                        connection error or timeout; ``delay`` = Retry-After
        │   └── RetriesExhausted     the client's transport retries ran out (``attempts``)
        ├── FatalHTTPError           also a `Fatal`: a status mapped to ``"fatal"``
        ├── HTTPStopped              also a `StopFlow`: a status mapped to ``"stop"``
        ├── TransportError           no usable response and retrying is unsafe or useless
        │                            (a read timeout on a POST, a TLS failure, a bad URL)
        ├── RequestBuildError        the context cannot make this request: a placeholder or
        │                            header value it cannot carry, a function that failed
        ├── ResponseError            a response mapped to ``"fail"`` (other 4xx, a POST's 5xx)
        │   ├── CheckFailed          a ``check`` did not hold; ``check`` says which
        │   ├── CaptureFailed        a ``capture`` found nothing; ``key`` names it
        │   └── BodyTooLarge         the body passed ``max_body`` (``limit``); not read further
        ├── Alarm                    a polled response met an alarm condition
        └── PollTimeout              polling gave up: attempts or time ran out

Because `RetryableHTTPError` is a `Retry`, `FatalHTTPError` a `Fatal` and `HTTPStopped` a
`StopFlow`, a driver treats them as it treats the plain ones.  Every error carries a
`ResponseInfo` (``error.response``, ``None`` when no response came): the status, the
headers and a short excerpt of the body, with secrets masked, so an error can be logged,
pickled or stored as a dead letter without leaking a token.  No error refers to a live
response: the response is closed, and the frames of its traceback keep no locals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service_flow.exceptions import Fatal, FlowError, Retry, StopFlow

__all__ = [
    "Alarm",
    "BodyTooLarge",
    "CaptureFailed",
    "CheckFailed",
    "FatalHTTPError",
    "HTTPError",
    "HTTPStopped",
    "PollTimeout",
    "RequestBuildError",
    "ResponseError",
    "ResponseInfo",
    "RetriesExhausted",
    "RetryableHTTPError",
    "TransportError",
]


@dataclass(frozen=True)
class ResponseInfo:
    """What an error keeps of a response: no secrets, no open connection, picklable."""

    status_code: int
    """The HTTP status."""
    headers: dict[str, str] = field(default_factory=dict)
    """The response headers, ``Set-Cookie`` and other secrets masked."""
    excerpt: str = ""
    """The start of the body (about 200 characters), secrets masked."""
    elapsed: float | None = None
    """Seconds from sending the request to reading the response."""


class HTTPError(FlowError):
    """Base class of the HTTP services' errors.

    ``method`` and ``url`` say which request failed (the URL with secrets masked);
    ``response`` is a `ResponseInfo`, or ``None`` when no response came.
    """

    def __init__(
        self,
        *args: object,
        method: str = "",
        url: str = "",
        response: ResponseInfo | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.method = method
        self.url = url
        self.response = response

    @property
    def status(self) -> int | None:
        """The response's status, ``None`` when no response came."""
        return None if self.response is None else self.response.status_code


class RetryableHTTPError(HTTPError, Retry):
    """Try this input again later: 429, a 5xx, a connection error or a timeout.

    ``delay`` is the server's ``Retry-After`` (capped), or ``None`` to let the retry
    policy choose.
    """


class RetriesExhausted(RetryableHTTPError):
    """The client's transport retries (urllib3's) ran out; ``attempts`` counts them all.

    Still a `Retry`: the driver's policy decides whether the input gets another go later.
    """

    def __init__(self, *args: object, attempts: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts = attempts


class FatalHTTPError(HTTPError, Fatal):
    """A status mapped to ``"fatal"``: restart the resources (the session) and try again."""


class HTTPStopped(HTTPError, StopFlow):
    """A status mapped to ``"stop"``: this input is done; not a failure."""


class TransportError(HTTPError):
    """No usable response, and sending again would be unsafe or pointless.

    Unsafe: a POST whose response was lost may have been processed.  Pointless: a TLS
    failure, a malformed URL.
    """


class RequestBuildError(HTTPError):
    """The request could not be built from the context; nothing was sent.

    ``part`` names what failed: ``"placeholder 'order_id'"`` (``None``, bytes, a
    container, ``""`` or a dot segment such as ``".."``), ``"header 'X-Sig'"`` (a value
    that is not ASCII text, or a line break; the value is never shown), or the
    function of the context computing a header, a parameter or the body (its exception
    is the ``__cause__``).
    """

    def __init__(self, *args: object, part: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.part = part


class ResponseError(HTTPError):
    """A response mapped to ``"fail"``: a 4xx, or a 5xx on a request that is not idempotent."""


class CheckFailed(ResponseError):
    """A ``check`` on the response did not hold; ``check`` describes it."""

    def __init__(self, *args: object, check: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check = check


class CaptureFailed(ResponseError):
    """A ``capture`` found no value in the response (and has no default); ``key`` names it."""

    def __init__(self, *args: object, key: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key = key


class BodyTooLarge(ResponseError):
    """The response's body is larger than ``max_body`` bytes (``limit``): refused, not read further.

    With a ``Content-Length`` above the limit nothing is read; otherwise reading stops
    at the limit (counting bytes after decompression).
    """

    def __init__(self, *args: object, limit: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit


class Alarm(HTTPError):
    """An alarm condition held for a polled response.

    ``condition`` describes the condition that held, ``attempts`` counts the polls made,
    ``response`` keeps the response's status, masked headers and a masked excerpt.
    """

    def __init__(self, *args: object, condition: str = "", attempts: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.condition = condition
        self.attempts = attempts


class PollTimeout(HTTPError):
    """Polling gave up: ``max_attempts`` polls or ``timeout`` seconds without success.

    ``attempts`` counts the polls, ``elapsed`` the seconds spent, ``response`` keeps the
    last response (``None`` if none came) and ``last_error`` describes the ignored error
    of the last poll, if it raised one.
    """

    def __init__(
        self,
        *args: object,
        attempts: int = 0,
        elapsed: float = 0.0,
        last_error: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.attempts = attempts
        self.elapsed = elapsed
        self.last_error = last_error
