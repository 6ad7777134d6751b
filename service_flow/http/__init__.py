"""HTTP services built on `requests`: requests, captures and checks, status mapping, auth, limits.

::

    from service_flow.http import BearerAuth, Client

    api = Client("https://api.example.com", auth=BearerAuth(fetch_token))
    flow = api.get("/users/{user_id}").capture("user", "$.data").check(status=200) >> api.post(
        "/audit", json=lambda ctx: {"user": ctx["user"]["id"]}
    )

A `Request` is a service: its URL, query, headers and body come from the context, its
captures go back into it.  A `Client` holds the pooled session (a resource the driver
restarts after `Fatal`), defaults, auth, limits (`RateLimit`, `ConcurrencyLimit`) and
transport retries.  `Poll` repeats a request until a condition (`Status`, `JsonPath`...)
holds.  `AsyncClient`, `AsyncRequest` and `AsyncPoll` do the same on httpx (the
``async`` extra).  Statuses map to the flow's own exceptions
(`service_flow.http.status`); errors are drawn in `service_flow.http.errors`.
"""

from __future__ import annotations

from service_flow.http._redact import add_sensitive_names
from service_flow.http.aio import AsyncClient, AsyncPoll, AsyncRequest
from service_flow.http.auth import Auth, BasicAuth, BearerAuth
from service_flow.http.client import DEFAULT_TIMEOUT, RETRY_STATUSES, Client, Limit, Timeout, TransportRetry, Verify
from service_flow.http.conditions import (
    AllOf,
    AnyOf,
    Callback,
    Condition,
    ConditionSpec,
    Header,
    Json,
    JsonPath,
    JsonPathCondition,
    Not,
    Status,
    Text,
    as_condition,
)
from service_flow.http.errors import (
    BodyTooLarge,
    CaptureFailed,
    CheckFailed,
    FatalHTTPError,
    HTTPError,
    HTTPStopped,
    RequestBuildError,
    ResponseError,
    ResponseInfo,
    RetriesExhausted,
    RetryableHTTPError,
    TransportError,
)
from service_flow.http.limits import ConcurrencyLimit, RateLimit
from service_flow.http.poll import Alarm, Poll, PollTimeout
from service_flow.http.request import Capture, Outgoing, Request
from service_flow.http.status import IDEMPOTENT_METHODS, MAX_RETRY_AFTER, Action, StatusMap, parse_retry_after

__all__ = [
    "DEFAULT_TIMEOUT",
    "IDEMPOTENT_METHODS",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "Action",
    "Alarm",
    "AllOf",
    "AnyOf",
    "AsyncClient",
    "AsyncPoll",
    "AsyncRequest",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "BodyTooLarge",
    "Callback",
    "Capture",
    "CaptureFailed",
    "CheckFailed",
    "Client",
    "ConcurrencyLimit",
    "Condition",
    "ConditionSpec",
    "FatalHTTPError",
    "HTTPError",
    "HTTPStopped",
    "Header",
    "Json",
    "JsonPath",
    "JsonPathCondition",
    "Limit",
    "Not",
    "Outgoing",
    "Poll",
    "PollTimeout",
    "RateLimit",
    "Request",
    "RequestBuildError",
    "ResponseError",
    "ResponseInfo",
    "RetriesExhausted",
    "RetryableHTTPError",
    "Status",
    "StatusMap",
    "Text",
    "Timeout",
    "TransportError",
    "TransportRetry",
    "Verify",
    "add_sensitive_names",
    "as_condition",
    "parse_retry_after",
]
