"""Retry policies and the meaning of an exception to whatever runs a flow many times.

The driver, the Celery task and the HTTP services share these, so a `Retry` raised by a
service means the same thing wherever the flow runs:

* `RetryPolicy` says how many attempts an input gets and how long to wait between them
  (exponential backoff with a cap and jitter; a ``Retry(delay=...)`` overrides it);
* `classify` says what an exception asks for: stop, retry, restart or dead-letter;
* `Steering` holds the options every runner shares (the two policies, ``max_restarts``,
  ``retry_on``/``fatal_on``), checked once, and the restart budget they all count alike.
"""

from __future__ import annotations

import enum
import math
import numbers
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from service_flow.exceptions import ConfigurationError, Fatal, ForkError, Retry, StopFlow

__all__ = [
    "CEILING",
    "NO_RETRY",
    "RESTART",
    "ErrorKind",
    "RetryPolicy",
    "Steering",
    "classify",
    "exception_types",
    "number_problem",
    "steering_problems",
]


def number_problem(name: str, value: object, *, minimum: float = 0, integer: bool = False) -> str | None:
    """What is wrong with ``value`` for the option ``name`` (``None`` when nothing is).

    Numbers must be real, finite and at least ``minimum``; a bool is not a number here,
    and ``integer`` options take whole numbers only.

    >>> number_problem("workers", float("nan"), minimum=1, integer=True)
    'workers must be a whole number of at least 1, got nan'
    >>> number_problem("initial", "3") is None
    False
    """
    if integer:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            return f"{name} must be a whole number of at least {minimum:g}, got {value!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value < math.inf:
        return f"{name} must be a finite number of at least {minimum:g}, got {value!r}"
    return None


CEILING = 3600.0
"""The default `RetryPolicy.ceiling`: no wait the policy allows is longer than an hour."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try an input again and how long to wait before each attempt.

    Attempt ``n`` (1 for the first retry) waits ``min(max_delay, initial * multiplier **
    (n - 1))`` seconds, of which a random fraction up to ``jitter`` is taken away (``0``:
    exact delays; ``1``: "full jitter", anywhere between 0 and the delay), so many
    workers failing together do not retry together.  A ``Retry(delay=...)`` raised by a
    service replaces the computed delay (an HTTP ``Retry-After``, for instance), up to
    ``ceiling`` seconds: no delay this policy hands out is longer than ``ceiling``.  A
    ``Retry`` whose delay is not a number of seconds, zero or more (NaN, a string: one
    built around its constructor's check) gets the computed delay instead.

    ``max_attempts`` counts every attempt, the first included: ``RetryPolicy(max_attempts=1)``
    never retries.  Every option is checked when the policy is made.

    >>> policy = RetryPolicy(initial=1, multiplier=2, max_delay=5, jitter=0)
    >>> [policy.delay(n) for n in range(1, 6)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    >>> policy.delay(1, Retry(delay=30))
    30.0
    >>> policy.delay(1, Retry(delay=1e10))
    3600.0
    """

    max_attempts: int = 5
    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 1.0
    ceiling: float = CEILING

    def __post_init__(self) -> None:
        problems = [
            problem
            for problem in (
                number_problem("max_attempts", self.max_attempts, minimum=1, integer=True),
                number_problem("initial", self.initial),
                number_problem("multiplier", self.multiplier, minimum=1),
                # An infinite max_delay means no cap of its own: the ceiling still caps.
                None if self.max_delay == math.inf else number_problem("max_delay", self.max_delay),
                number_problem("jitter", self.jitter),
                number_problem("ceiling", self.ceiling),
            )
            if problem is not None
        ]
        if not problems and self.jitter > 1:
            problems.append(f"jitter must be between 0 and 1, got {self.jitter!r}")
        if problems:
            msg = f"RetryPolicy: {'; '.join(problems)}"
            raise ConfigurationError(msg)

    def exhausted(self, attempts: int) -> bool:
        """Whether an input that has been tried ``attempts`` times may not be tried again."""
        _check_count("exhausted", "attempts", attempts, 0)
        return attempts >= self.max_attempts

    def backoff(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1-based) before jitter, in constant time."""
        _check_count("backoff", "retry", retry, 1)
        cap = min(self.max_delay, self.ceiling)
        if self.initial == 0:
            return 0.0
        if self.initial >= cap:
            return float(cap)
        exponent = max(retry - 1, 0)
        # Compare exponents rather than computing a huge power for a late retry.
        if self.multiplier == 1:
            return float(self.initial)
        if exponent >= math.log(cap / self.initial, self.multiplier):
            return float(cap)
        return float(min(self.initial * self.multiplier**exponent, cap))

    def delay(self, retry: int, error: BaseException | None = None, rng: random.Random | None = None) -> float:
        """The seconds to wait before retry number ``retry`` (1-based), after ``error``.

        Always a finite number between 0 and ``ceiling``.  ``rng`` draws the jitter (a
        seeded `random.Random` makes delays reproducible).  ``retry`` is a whole number
        of at least 1, else a `ConfigurationError` naming it.
        """
        _check_count("delay", "retry", retry, 1)
        if isinstance(error, Retry):
            asked: object = error.delay  # set by a service: anything may be there
            if (
                asked is not None
                and not isinstance(asked, bool)
                and isinstance(asked, (int, float))
                and asked >= 0  # exact for ints of any size; NaN fails it
            ):
                return float(min(asked, self.ceiling))  # infinity: as long as allowed
        delay = self.backoff(retry)
        if self.jitter and delay:
            delay -= delay * self.jitter * (rng or _RANDOM).random()
        return delay


def _check_count(method: str, name: str, value: object, minimum: int) -> None:
    problem = number_problem(name, value, minimum=minimum, integer=True)
    if problem is not None:
        msg = f"RetryPolicy.{method}: {problem}"
        raise ConfigurationError(msg)


_RANDOM = random.Random()  # noqa: S311 - jitter, not cryptography

NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries."""

RESTART = RetryPolicy(initial=1.0, max_delay=30.0)
"""The default backoff between restarts after `Fatal` (the driver's and Celery's)."""

_DEFAULT_RETRY = RetryPolicy()


def exception_types(name: str, value: object) -> tuple[tuple[type[BaseException], ...], list[str]]:
    """``retry_on``/``fatal_on`` as a tuple of exception types, and what is wrong with it.

    One exception class is accepted as well as an iterable of them.

    >>> exception_types("retry_on", TimeoutError)
    ((<class 'TimeoutError'>,), [])
    >>> exception_types("fatal_on", "OSError")[1]
    ["fatal_on takes exception types, got 'OSError'"]
    """
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return (), [f"{name} takes exception types, got {value!r}"]
    kinds = tuple(value)
    problems = [
        f"{name} takes exception types, got {kind!r}"
        for kind in kinds
        if not (isinstance(kind, type) and issubclass(kind, BaseException))
    ]
    return kinds, problems


@dataclass(frozen=True)
class Steering:
    """What every runner (the driver, ``Driver.arun``, a Celery task) does with a run's end.

    The options they share, checked once, and the two budgets they count the same way:

    * a `Retry` (or a type of ``retry_on``) runs the input again after ``retry.delay``,
      until ``retry.max_attempts`` attempts were made; then it is a dead letter;
    * a `Fatal` (or a type of ``fatal_on``) restarts the processor, then runs the same
      input again.  An input may be followed by ``max_restarts`` restarts in a row (its
      attempts raising `Fatal` one after the other); when its attempt after the last of
      them raises `Fatal` again, the runner gives up (the driver stops, a Celery worker
      shuts down).  Whatever else the other inputs do in between does not count: the
      rule gives the same outcomes inline, on threads, in worker processes and on Celery.

    >>> steering = Steering.of("Driver", max_restarts=2, retry_on=TimeoutError)
    >>> steering.restart_delay(2, random.Random(0)) is None, steering.restart_delay(3) is None
    (False, True)
    """

    retry: RetryPolicy = _DEFAULT_RETRY
    restart: RetryPolicy = RESTART
    max_restarts: int = 5
    retry_on: tuple[type[BaseException], ...] = ()
    fatal_on: tuple[type[BaseException], ...] = ()

    @classmethod
    def of(
        cls,
        owner: str,
        *,
        retry: object = None,
        restart: object = None,
        max_restarts: object = 5,
        retry_on: object = (),
        fatal_on: object = (),
        problems: Iterable[str | None] = (),
    ) -> Steering:
        """Check the options and build the steering; one `ConfigurationError` naming every problem.

        ``owner`` opens the message (``"Driver for flow 'orders'"``); ``problems`` adds the
        caller's own (``None`` entries are skipped).
        """
        found = [problem for problem in problems if problem is not None]
        for name, policy in (("retry", retry), ("restart", restart)):
            if policy is not None and not isinstance(policy, RetryPolicy):
                found.append(f"{name} takes a RetryPolicy (or None), got {policy!r}")
        found.extend(steering_problems(max_restarts, retry_on, fatal_on))
        if found:
            msg = f"{owner}: {'; '.join(found)}"
            raise ConfigurationError(msg)
        return cls(
            retry if isinstance(retry, RetryPolicy) else _DEFAULT_RETRY,
            restart if isinstance(restart, RetryPolicy) else RESTART,
            int(cast("int", max_restarts)),
            exception_types("retry_on", retry_on)[0],
            exception_types("fatal_on", fatal_on)[0],
        )

    def classify(self, error: BaseException) -> ErrorKind:
        """What ``error`` asks for, with this steering's ``retry_on``/``fatal_on``."""
        return classify(error, retry_on=self.retry_on, fatal_on=self.fatal_on)

    def retry_delay(self, attempts: int, error: BaseException, rng: random.Random | None = None) -> float | None:
        """The wait before the next attempt of an input tried ``attempts`` times; ``None``: no more."""
        if self.retry.exhausted(attempts):
            return None
        return self.retry.delay(attempts, error, rng)

    def restart_delay(self, restarts: int, rng: random.Random | None = None) -> float | None:
        """The backoff before restart number ``restarts`` in a row; ``None`` once they ran out."""
        if restarts > self.max_restarts:
            return None
        return self.restart.delay(restarts, None, rng)

    def gave_up(self, restarts: int) -> str:
        """Why a runner stops after an input's ``restarts`` (the budget plus one) in a row."""
        return f"{restarts - 1} restarts in a row did not help"


def steering_problems(max_restarts: object, retry_on: object = (), fatal_on: object = ()) -> list[str]:
    """What is wrong with the options every runner takes (empty when nothing is); see `Steering.of`.

    >>> steering_problems(-1, [ValueError, "oops"])
    ['max_restarts must be a whole number of at least 0, got -1', "retry_on takes exception types, got 'oops'"]
    """
    problems = [p for p in [number_problem("max_restarts", max_restarts, integer=True)] if p is not None]
    problems.extend(exception_types("retry_on", retry_on)[1])
    problems.extend(exception_types("fatal_on", fatal_on)[1])
    return problems


class ErrorKind(str, enum.Enum):
    """What an exception that left a flow asks the runner to do."""

    STOP = "stop"
    """`StopFlow`: the input is done, not a failure; do not retry."""
    RETRY = "retry"
    """`Retry` (or a type listed in ``retry_on``): run the same input again later."""
    FATAL = "fatal"
    """`Fatal` (or a type in ``fatal_on``): restart the resources, then run the input again."""
    FAIL = "fail"
    """Anything else: the input goes to the dead letters."""


def classify(
    error: BaseException,
    *,
    retry_on: Iterable[type[BaseException]] = (),
    fatal_on: Iterable[type[BaseException]] = (),
) -> ErrorKind:
    """What ``error`` asks for.

    The library's own exceptions decide first.  A `ForkError` is a `Fatal` (so that
    ``except FatalException`` keeps catching it) but restarting cannot give an input a
    value the fork knows, so it is a dead letter.  Other exceptions are looked up in
    ``fatal_on`` and then ``retry_on``.

    >>> classify(Retry()), classify(TimeoutError(), retry_on=[OSError])
    (<ErrorKind.RETRY: 'retry'>, <ErrorKind.RETRY: 'retry'>)
    """
    for kinds, kind in (
        (StopFlow, ErrorKind.STOP),
        (ForkError, ErrorKind.FAIL),
        (Fatal, ErrorKind.FATAL),
        (Retry, ErrorKind.RETRY),
        (tuple(fatal_on), ErrorKind.FATAL),
        (tuple(retry_on), ErrorKind.RETRY),
    ):
        if isinstance(error, kinds):
            return kind
    return ErrorKind.FAIL
