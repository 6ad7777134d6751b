"""HTTP services built on `requests`: requests, captures and checks, status mapping, auth, limits.

::

    from service_flow.http import BearerAuth, Client

    api = Client("https://api.example.com", auth=BearerAuth(fetch_token))
    flow = api.get("/users/{user_id}").capture("user", "$.data").check(status=200) >> api.post(
        "/audit", json=lambda ctx: {"user": ctx["user"]["id"]}
    )

A `Request` is a service: its URL, query, headers and body come from the context, its
captures go back into it.  A `Client` holds the pooled session (a resource the driver
restarts after `Fatal`), defaults, auth, limits and transport retries.  Statuses map to
the flow's own exceptions (`service_flow.http.status`); errors are drawn in
`service_flow.http.errors`.
"""

from __future__ import annotations

from service_flow.http.auth import Auth, BasicAuth, BearerAuth
from service_flow.http.client import DEFAULT_TIMEOUT, RETRY_STATUSES, Client, Limit, Timeout, TransportRetry
from service_flow.http.errors import (
    CaptureFailed,
    CheckFailed,
    FatalHTTPError,
    HTTPError,
    HTTPStopped,
    ResponseError,
    ResponseInfo,
    RetriesExhausted,
    RetryableHTTPError,
    TransportError,
)
from service_flow.http.request import Capture, Outgoing, Request
from service_flow.http.status import IDEMPOTENT_METHODS, MAX_RETRY_AFTER, Action, StatusMap, parse_retry_after

__all__ = [
    "DEFAULT_TIMEOUT",
    "IDEMPOTENT_METHODS",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "Action",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "Capture",
    "CaptureFailed",
    "CheckFailed",
    "Client",
    "FatalHTTPError",
    "HTTPError",
    "HTTPStopped",
    "Limit",
    "Outgoing",
    "Request",
    "ResponseError",
    "ResponseInfo",
    "RetriesExhausted",
    "RetryableHTTPError",
    "StatusMap",
    "Timeout",
    "TransportError",
    "TransportRetry",
    "parse_retry_after",
]
