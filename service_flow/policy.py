"""Retry policies and the meaning of an exception to whatever runs a flow many times.

The driver, the Celery task and the HTTP services share these, so a `Retry` raised by a
service means the same thing wherever the flow runs:

* `RetryPolicy` says how many attempts an input gets and how long to wait between them
  (exponential backoff with a cap and jitter; a ``Retry(delay=...)`` overrides it);
* `classify` says what an exception asks for: stop, retry, restart or dead-letter.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from service_flow.exceptions import ConfigurationError, Fatal, ForkError, Retry, StopFlow

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["NO_RETRY", "RESTART", "ErrorKind", "RetryPolicy", "classify", "steering_problems"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try an input again and how long to wait before each attempt.

    Attempt ``n`` (1 for the first retry) waits ``min(max_delay, initial * multiplier **
    (n - 1))`` seconds, of which a random fraction up to ``jitter`` is taken away (``0``:
    exact delays; ``1``: "full jitter", anywhere between 0 and the delay), so many
    workers failing together do not retry together.  A ``Retry(delay=...)`` raised by a
    service replaces the computed delay (an HTTP ``Retry-After``, for instance).

    ``max_attempts`` counts every attempt, the first included: ``RetryPolicy(max_attempts=1)``
    never retries.

    >>> policy = RetryPolicy(initial=1, multiplier=2, max_delay=5, jitter=0)
    >>> [policy.delay(n) for n in range(1, 6)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    >>> policy.delay(1, Retry(delay=30))
    30.0
    """

    max_attempts: int = 5
    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be at least 1, got {self.max_attempts!r}")
        if self.initial < 0:
            problems.append(f"initial must be zero or more seconds, got {self.initial!r}")
        if self.multiplier < 1:
            problems.append(f"multiplier must be at least 1, got {self.multiplier!r}")
        if self.max_delay < 0:
            problems.append(f"max_delay must be zero or more seconds, got {self.max_delay!r}")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter must be between 0 and 1, got {self.jitter!r}")
        if problems:
            msg = f"RetryPolicy: {'; '.join(problems)}"
            raise ConfigurationError(msg)

    def exhausted(self, attempts: int) -> bool:
        """Whether an input that has been tried ``attempts`` times may not be tried again."""
        return attempts >= self.max_attempts

    def backoff(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1-based) before jitter."""
        if self.initial == 0:
            return 0.0
        # Compare exponents rather than computing a huge power for a late retry.
        exponent = retry - 1
        delay = self.initial
        while exponent > 0 and delay < self.max_delay:
            delay *= self.multiplier
            exponent -= 1
        return float(min(delay, self.max_delay))

    def delay(self, retry: int, error: BaseException | None = None, rng: random.Random | None = None) -> float:
        """The seconds to wait before retry number ``retry`` (1-based), after ``error``.

        ``rng`` draws the jitter (a seeded `random.Random` makes delays reproducible).
        """
        if isinstance(error, Retry) and error.delay is not None:
            return float(error.delay)
        delay = self.backoff(retry)
        if self.jitter and delay:
            delay -= delay * self.jitter * (rng or _RANDOM).random()
        return delay


_RANDOM = random.Random()  # noqa: S311 - jitter, not cryptography

NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries."""

RESTART = RetryPolicy(initial=1.0, max_delay=30.0)
"""The default backoff between restarts after `Fatal` (the driver's and Celery's)."""


def steering_problems(max_restarts: int, retry_on: Iterable[object] = (), fatal_on: Iterable[object] = ()) -> list[str]:
    """What is wrong with the options every runner takes (empty when nothing is).

    >>> steering_problems(-1, [ValueError, "oops"])
    ['max_restarts must be zero or more, got -1', "retry_on and fatal_on take exception types, got 'oops'"]
    """
    problems = []
    if max_restarts < 0:
        problems.append(f"max_restarts must be zero or more, got {max_restarts!r}")
    problems.extend(
        f"retry_on and fatal_on take exception types, got {kind!r}"
        for kind in (*retry_on, *fatal_on)
        if not (isinstance(kind, type) and issubclass(kind, BaseException))
    )
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
