import math
import pickle
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service_flow import (
    ConfigurationError,
    ErrorKind,
    Fatal,
    FlowError,
    ForkError,
    MissingContextKey,
    Retry,
    RetryPolicy,
    StopFlow,
    classify,
)
from service_flow.policy import NO_RETRY


def test_backoff_grows_by_the_multiplier_up_to_the_cap():
    policy = RetryPolicy(initial=0.5, multiplier=3, max_delay=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_a_late_retry_does_not_overflow():
    policy = RetryPolicy(initial=1, multiplier=10, max_delay=60, jitter=0)
    assert policy.delay(10_000) == 60.0


def test_retry_delay_overrides_the_computed_delay_even_above_the_cap():
    policy = RetryPolicy(max_delay=1, jitter=1)
    assert policy.delay(3, Retry(delay=120)) == 120.0
    assert policy.delay(3, Retry(delay=0)) == 0.0


def test_retry_without_delay_uses_the_policy():
    policy = RetryPolicy(initial=2, jitter=0)
    assert policy.delay(1, Retry("busy")) == 2.0


@given(retry=st.integers(1, 50), jitter=st.floats(0, 1), seed=st.integers())
def test_jitter_only_shortens_and_never_goes_negative(retry, jitter, seed):
    policy = RetryPolicy(initial=0.1, multiplier=2, max_delay=5, jitter=jitter)
    delay = policy.delay(retry, rng=random.Random(seed))
    assert 0 <= delay <= policy.backoff(retry)
    assert delay >= policy.backoff(retry) * (1 - jitter) - 1e-12


def test_a_seeded_rng_gives_the_same_delays():
    policy = RetryPolicy()
    first = [policy.delay(n, rng=random.Random(7)) for n in range(1, 5)]
    second = [policy.delay(n, rng=random.Random(7)) for n in range(1, 5)]
    assert first == second


def test_max_attempts_counts_the_first_attempt():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]
    assert NO_RETRY.exhausted(1)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial": -1}, "initial"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"max_delay": -2}, "max_delay"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_bad_options_are_named(options, named):
    with pytest.raises(ConfigurationError, match=named) as caught:
        RetryPolicy(**options)
    assert isinstance(caught.value, (FlowError, ValueError))


def test_policies_are_values():
    assert RetryPolicy(max_attempts=3) == RetryPolicy(max_attempts=3)
    assert pickle.loads(pickle.dumps(RetryPolicy(initial=1))) == RetryPolicy(initial=1)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (StopFlow("done"), ErrorKind.STOP),
        (Retry(), ErrorKind.RETRY),
        (Fatal(), ErrorKind.FATAL),
        (ForkError(key="k", value=1), ErrorKind.FAIL),
        (MissingContextKey(key="k"), ErrorKind.FAIL),
        (ValueError(), ErrorKind.FAIL),
    ],
)
def test_classify_the_library_exceptions(error, kind):
    assert classify(error) is kind


def test_classify_configured_types():
    assert classify(TimeoutError(), retry_on=[OSError]) is ErrorKind.RETRY
    assert classify(ConnectionError(), fatal_on=[ConnectionError], retry_on=[OSError]) is ErrorKind.FATAL
    # The library's meaning wins over the configuration.
    assert classify(StopFlow(), fatal_on=[Exception]) is ErrorKind.STOP


@pytest.mark.parametrize("retry", [0, -1, math.nan, math.inf, True, "3", 2.5, None])
def test_delay_and_backoff_refuse_a_retry_number_that_is_not_a_whole_number_from_1(retry):
    policy = RetryPolicy(jitter=0)
    with pytest.raises(ConfigurationError, match=r"RetryPolicy\.delay: retry must be a whole number"):
        policy.delay(retry)
    with pytest.raises(ConfigurationError, match=r"RetryPolicy\.backoff: retry"):
        policy.backoff(retry)
    with pytest.raises(ConfigurationError, match=r"RetryPolicy\.exhausted: attempts"):
        policy.exhausted("3")
    assert policy.delay(10**100) == 60.0  # a huge but whole retry number is capped, never NaN
