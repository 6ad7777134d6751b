"""Polling: send a request again and again until the response says the work is done.

::

    job_done = Poll(
        api.get("/jobs/{job_id}").capture("job", "$"),
        until=Status(200) & (JsonPath("$.status") == "SUCCESS"),
        alarm=JsonPath("$.status") == "FAILED",
        ignore=[RetryableHTTPError],        # a refused connection or a timeout: poll on
        interval=0.5, backoff=2, max_interval=10,
        timeout=120,
    )
    flow = api.post("/jobs", json=...).capture("job_id", "$.id") >> job_done

Each poll sends the `Request` through its client (auth, limits and logging included)
and looks at the response with the conditions (`service_flow.http.conditions`):

* when ``alarm`` holds, `Alarm` is raised, carrying the alarm that held (one of a
  list) and the response;
* when ``until`` holds, the response goes through the request's checks and captures
  (its status mapping is skipped: ``until`` already said this response is the answer),
  and the captures are merged into the context, as a request's would be;
* otherwise the response is closed and, after the interval, the next poll goes.

While polling, statuses mean nothing by themselves: a 404 or a 503 is just "not yet"
unless a condition says otherwise (``alarm=Status(400, 401, 403)``).  A ``Retry-After``
on any response (a ``202`` often sends one) lengthens the next interval.  Exceptions of
the types in ``ignore`` (raised while sending or by a condition) count as a poll that
said "not yet"; `Alarm` is never ignored.  After ``max_attempts`` polls or ``timeout``
seconds, whichever comes first, `PollTimeout` is raised: a poll never returns a response
that did not satisfy ``until``.

The errors, under `service_flow.http.HTTPError`::

    HTTPError
    ├── Alarm            an alarm condition held: ``condition``, ``attempts``, ``response``
    └── PollTimeout      polling gave up: ``attempts``, ``elapsed``, ``last_error``, ``response``
"""

from __future__ import annotations

import functools
import math
import numbers
import random
import sys
from typing import TYPE_CHECKING, Any, ClassVar

from service_flow import _log
from service_flow._log import debug_logger
from service_flow.clock import SYSTEM_CLOCK, Clock
from service_flow.exceptions import ConfigurationError
from service_flow.http import _redact
from service_flow.http.client import forgetting
from service_flow.http.conditions import AnyOf, Condition, ConditionSpec, Observed, as_condition
from service_flow.http.errors import Alarm, HTTPError, PollTimeout
from service_flow.http.request import Request, response_info
from service_flow.http.status import parse_retry_after
from service_flow.policy import RetryPolicy
from service_flow.service import Service

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from service_flow.http.request import Outgoing

__all__ = ["Alarm", "Poll", "PollTimeout"]

# What the poll loop asks its runner to do.
SEND, CLOSE, SLEEP = "send", "close", "sleep"

# Every status "ok": the response `until` accepted is not judged again by its status.
_ANY_STATUS_OK = {f"{digit}xx": "ok" for digit in range(10)}
_RANDOM = random.Random()  # noqa: S311 - jitter, not cryptography


class _Verdict:
    """What one poll said."""

    WAIT = "wait"
    DONE = "done"
    ALARM = "alarm"


class Poll(Service):
    """A service that sends ``request`` until ``until`` holds (see the module docs).

    ``until``
        the success condition: a `Condition`, a callable, httsleep's dict form or a
        list of them (any);
    ``alarm``
        conditions that end polling with `Alarm` (a list: any of them);
    ``ignore``
        exception types that count as "not yet" (matched against the error raised and
        the `requests`/`httpx` error it was made from: ``requests.ConnectionError``
        works too);
    ``max_attempts``, ``timeout``
        when to give up: polls made (a whole number, at least 1), seconds since the
        first poll (finite, more than 0); at least one of them.  A request in flight
        may overrun ``timeout`` by its own timeout;
    ``interval``, ``backoff``, ``max_interval``, ``jitter``
        the wait before poll ``n + 1`` is ``min(max_interval, interval * backoff **
        (n - 1))`` less a random fraction up to ``jitter`` (`RetryPolicy`'s rule);
        ``0`` polls without sleeping.  Finite numbers: seconds (0 or more), a factor
        of at least 1, a fraction between 0 and 1; ``max_interval=None``: no cap but the
        policy ceiling (an hour).

    Every option is checked here: NaN, infinities, strings, booleans and negatives
    are a `ConfigurationError` naming the option.
    ``clock``
        what it sleeps on and reads the time from (a `FakeClock` in tests);
    ``name``
        the step's name (default ``"poll GET /jobs/{job_id}"``).
    """

    blocking: ClassVar[bool] = True
    name: ClassVar[str | None] = None

    def __init__(  # noqa: PLR0913 - the options of a poll, all keyword-only, each checked
        self,
        request: Request,
        *,
        until: ConditionSpec,
        alarm: ConditionSpec | None = None,
        ignore: Iterable[type[BaseException]] | type[BaseException] = (),
        max_attempts: int | None = None,
        timeout: float | None = None,
        interval: float = 1.0,
        backoff: float = 1.0,
        max_interval: float | None = None,
        jitter: float = 0.0,
        clock: Clock = SYSTEM_CLOCK,
        name: str | None = None,
    ) -> None:
        self._check_request(request)
        label = name or f"poll {request.name}"
        owner = f"Poll {label!r}"
        self.name = label  # type: ignore[misc]  # instance attributes shadow Service's on purpose
        self.request = request
        self.resources = (request.client,)
        self.provides = request.provides  # type: ignore[misc]
        self.requires = request.requires
        """The context keys the request's URL placeholders need."""
        self.until = _condition(until, "until", owner)
        self.alarm: Condition | None = None if alarm is None else _condition(alarm, "alarm", owner)
        self.ignore = _exception_types(ignore, owner)
        if max_attempts is None and timeout is None:
            msg = f"{owner}: give max_attempts or timeout (or both), so that polling ends"
            raise ConfigurationError(msg)
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            msg = f"{owner}: max_attempts must be a whole number of at least 1, got {max_attempts!r}"
            raise ConfigurationError(msg)
        self.max_attempts = max_attempts
        self.timeout = None if timeout is None else _number(timeout, "timeout", owner, above=0, rule="more than 0")
        cap = None if max_interval is None else _number(max_interval, "max_interval", owner)
        self.intervals = RetryPolicy(
            initial=_number(interval, "interval", owner),
            multiplier=_number(backoff, "backoff", owner, at_least=1, rule="at least 1", unit=""),
            # No cap asked for: the largest finite one (a policy's caps are finite numbers).
            max_delay=sys.float_info.max if cap is None else cap,
            jitter=_number(jitter, "jitter", owner, at_most=1, rule="between 0 and 1", unit=""),
        )
        self.clock = clock
        # The final response is judged by checks and captures only (see the module docs).
        self._final = request.with_options(on_status=_ANY_STATUS_OK)

    @staticmethod
    def _check_request(request: object) -> None:
        from service_flow.http.aio import AsyncRequest  # aio imports this module

        if not isinstance(request, Request) or isinstance(request, AsyncRequest):
            hint = " (use AsyncPoll for an AsyncRequest)" if isinstance(request, AsyncRequest) else ""
            msg = f"Poll polls a Request, got {request!r}{hint}"
            raise ConfigurationError(msg)

    # -- the parts shared by the sync and async loops -----------------------------------

    def _judge(self, response: Any) -> tuple[str, Condition | None]:
        """What this response says, and the alarm that held (if one did)."""
        seen = Observed(response)
        # An alarm wins over success: a response saying both is not one to trust.
        alarm = self.alarm
        if alarm is not None:
            held = alarm.holding(seen) if isinstance(alarm, AnyOf) else alarm if alarm.holds(seen) else None
            if held is not None:
                return _Verdict.ALARM, held
        return (_Verdict.DONE if self.until.holds(seen) else _Verdict.WAIT), None

    def _ignored(self, error: BaseException) -> bool:
        if isinstance(error, self.ignore):
            return True
        # Our HTTP errors are raised while handling the transport's own error.
        return isinstance(error, HTTPError) and isinstance(error.__context__, self.ignore)

    def _next_delay(self, attempt: int, response: Any, started: float, out: Outgoing, last_error: str | None) -> float:
        """The wait before the next poll; raises `PollTimeout` when there is none."""
        elapsed = self.clock.now() - started
        if self.max_attempts is not None and attempt >= self.max_attempts:
            msg = f"no success after {attempt} polls"
            raise self._gave_up(msg, attempt, elapsed, response, out, last_error)
        delay = self.intervals.delay(attempt, rng=_RANDOM)
        if response is not None:
            asked = parse_retry_after(
                response.headers.get("Retry-After"),
                date=response.headers.get("Date"),
                cap=self.request.client.max_retry_after,
            )
            if asked is not None and asked > delay:
                delay = asked
        if self.timeout is not None and elapsed + delay > self.timeout:
            # The next poll would start after the deadline: give up now, not after a sleep.
            why = f"no success within {self.timeout:g} s ({attempt} polls)"
            raise self._gave_up(why, attempt, elapsed, response, out, last_error)
        return delay

    def _alarm(self, response: Any, out: Outgoing, attempt: int, held: Condition | None) -> Alarm:
        info = response_info(response, out.secrets(self.request.auth))
        condition = repr(held)
        url = out.shown_url()
        excerpt = f"; body: {info.excerpt}" if info.excerpt else ""
        message = f"{out.method} {url} -> {info.status_code}: alarm {condition} held on poll {attempt}{excerpt}"
        _log.logger().warning("poll.alarm", service=self.name, condition=condition, attempts=attempt)
        return Alarm(message, method=out.method, url=url, response=info, condition=condition, attempts=attempt)

    def _gave_up(
        self, why: str, attempt: int, elapsed: float, response: Any, out: Outgoing, last_error: str | None
    ) -> PollTimeout:
        secrets = out.secrets(self.request.auth)
        info = None if response is None else response_info(response, secrets)
        url = out.shown_url()
        last = f"last status {info.status_code}" if info is not None else "no response"
        if last_error is not None:
            last += f", last error {last_error}"
        message = f"{out.method} {url}: {why}, waiting for {self.until!r} ({last})"
        _log.logger().warning("poll.gave_up", service=self.name, attempts=attempt, elapsed=round(elapsed, 3))
        return PollTimeout(
            message,
            method=out.method,
            url=url,
            response=info,
            attempts=attempt,
            elapsed=elapsed,
            last_error=last_error,
        )

    def _describe(self, error: BaseException, out: Outgoing) -> str:
        text = _redact.scrub(f"{type(error).__name__}: {error}", out.secrets(self.request.auth))
        return text[:200]

    # -- the loop ---------------------------------------------------------------------

    def _loop(self, out: Outgoing) -> Generator[tuple[str, Any], Any, dict[str, Any]]:
        """The poll, written once for both runners: it yields what to do, they do it.

        ``(SEND, None)`` gets the next response (or has the transport's error thrown
        in), ``(CLOSE, response)`` closes one, ``(SLEEP, seconds)`` waits.  The sync
        `__call__` and the async `AsyncPoll.__call__` differ only in how they act.
        """
        started = self.clock.now()
        attempt = 0
        last = None
        while True:
            attempt += 1
            response: Any = None
            last_error = None
            held = None
            try:
                response = yield (SEND, None)
                verdict, held = self._judge(response)
            except Exception as error:
                if response is not None:
                    yield (CLOSE, response)
                if not self._ignored(error):
                    raise
                verdict, response, last_error = _Verdict.WAIT, None, self._describe(error, out)
            if verdict is _Verdict.DONE:
                try:
                    captured = self._final.interpret(response, out)
                except Exception:
                    yield (CLOSE, response)
                    raise
                yield (CLOSE, response)
                self._succeeded(attempt)
                return captured
            if response is not None:
                yield (CLOSE, response)  # its content stays readable for the error messages
                last = response
            if verdict is _Verdict.ALARM:
                raise self._alarm(response, out, attempt, held)
            delay = self._next_delay(attempt, last, started, out, last_error)
            if delay > 0:
                yield (SLEEP, delay)

    @forgetting
    def __call__(self, context: dict[str, Any]) -> dict[str, Any]:
        """Poll with the request built from ``context``; return its captures from the final response."""
        out = self.request.build(context)
        del context  # its values (secrets too) stay out of tracebacks rendered with locals
        request = self.request
        send, read, auth, limits = request.client.send, request.read_polled, request.auth, request.limits
        loop = self._loop(out)
        command, value = next(loop)
        while True:
            result: Any = None
            try:
                if command is SEND:
                    result = send(out, auth=auth, limits=limits)
                    read(result, out)  # bounded; closes the response when it fails
                elif command is CLOSE:
                    value.close()
                else:
                    self.clock.sleep(value)
            except Exception as error:  # noqa: BLE001 - handed to the loop, which decides
                step = functools.partial(loop.throw, error)
            else:
                step = functools.partial(loop.send, result)
            try:
                command, value = step()
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _succeeded(self, attempt: int) -> None:
        log = debug_logger()
        if log is not None:
            log.debug("poll.succeeded", service=self.name, attempts=attempt)

    def __repr__(self) -> str:
        return f"<Poll {self.request.name} until {self.until!r}>"


def _condition(spec: object, option: str, owner: str) -> Condition:
    try:
        return as_condition(spec)
    except ConfigurationError as error:
        msg = f"{owner}: {option}: {error}"
        raise ConfigurationError(msg) from None


def _number(  # noqa: PLR0913 - the bounds of one option, all keyword-only
    value: object,
    option: str,
    owner: str,
    *,
    at_least: float = 0,
    above: float | None = None,
    at_most: float | None = None,
    rule: str = "zero or more",
    unit: str = " seconds",
) -> float:
    """``value`` as a float when it is a finite real number within bounds, else an error naming ``option``."""
    number = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
    if (
        not math.isfinite(number)
        or number < at_least
        or (above is not None and number <= above)
        or (at_most is not None and number > at_most)
    ):
        msg = f"{owner}: {option} must be a finite number, {rule}{unit}, got {value!r}"
        raise ConfigurationError(msg)
    return number


def _exception_types(ignore: object, owner: str) -> tuple[type[Exception], ...]:
    items = (ignore,) if isinstance(ignore, type) else ignore
    if not isinstance(items, (list, tuple, set, frozenset)):
        msg = f"{owner}: ignore takes exception classes, got {ignore!r}"
        raise ConfigurationError(msg)
    types = tuple(items)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            msg = f"{owner}: ignore takes exception classes (subclasses of Exception), got {kind!r}"
            raise ConfigurationError(msg)
    return types
