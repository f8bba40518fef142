"""The retry policy: checked on construction, exponential backoff with jitter, Retry-After honoured."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.errors import PermanentError, RetryLater
from handlers.retry import Retry


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "2.5"),
        ({"base_delay": 0}, "base_delay"),
        ({"base_delay": math.nan}, "nan"),
        ({"base_delay": 10, "cap": 5}, "cap"),
        ({"jitter": 1.5}, "1.5"),
        ({"jitter": -0.1}, "-0.1"),
    ],
)
def test_bad_settings_are_refused_by_name(options, named):
    with pytest.raises(ValueError, match=named):
        Retry(**options)


def test_delay_doubles_per_attempt_up_to_the_cap():
    policy = Retry(base_delay=2, cap=30, jitter=0.5)
    no_jitter = [policy.next_delay(n, rand=lambda: 0.0) for n in range(1, 7)]
    assert no_jitter == [2, 4, 8, 16, 30, 30]


def test_jitter_only_shortens_the_delay_by_at_most_its_fraction():
    policy = Retry(base_delay=10, cap=100, jitter=0.25)
    assert policy.next_delay(1, rand=lambda: 0.999999) == pytest.approx(7.5, abs=1e-4)
    assert policy.next_delay(1, rand=lambda: 0.5) == pytest.approx(8.75)


def test_never_sooner_than_retry_after_even_beyond_the_cap():
    policy = Retry(base_delay=1, cap=10)
    assert policy.next_delay(1, retry_after=7, rand=lambda: 0.0) == 7
    assert policy.next_delay(1, retry_after=120, rand=lambda: 0.0) == 120
    assert policy.next_delay(5, retry_after=3, rand=lambda: 0.0) == 10  # backoff already longer


def test_attempts_count_from_one():
    with pytest.raises(ValueError, match="0"):
        Retry().next_delay(0)


def test_a_huge_attempt_number_still_gives_the_cap():
    assert Retry(cap=60).next_delay(10_000, rand=lambda: 0.0) == 60


@given(attempt=st.integers(1, 200), retry_after=st.none() | st.floats(0, 1e6), seed=st.floats(0, 1, exclude_max=True))
def test_delay_stays_within_bounds(attempt, retry_after, seed):
    policy = Retry(base_delay=1, cap=300, jitter=0.5)
    delay = policy.next_delay(attempt, retry_after, rand=lambda: seed)
    assert delay >= (retry_after or 0)
    assert delay <= max(300, retry_after or 0)
    assert delay >= 0.5 * min(300, 2 ** (attempt - 1))


def test_errors_carry_their_reason_slug():
    throttled = RetryLater("throttled", retry_after=30)
    assert (throttled.reason, throttled.retry_after, str(throttled)) == ("throttled", 30, "throttled")
    assert PermanentError("invalid_grant").reason == "invalid_grant"


@given(retry_after=st.floats(0.001, 1e6), seed=st.floats(0, 1, exclude_max=True))
def test_after_a_throttle_the_wait_is_the_servers_spread_by_at_most_a_tenth(retry_after, seed):
    delay = Retry(jitter=1.0).after_throttle(retry_after, rand=lambda: seed)
    assert retry_after <= delay <= 1.1 * retry_after


def test_a_429_with_retry_after_defers_and_other_throttles_count():
    from app.microsoft.failures import Throttled, classify
    from handlers.errors import Deferred
    from handlers.failures import job_error

    def retry_after_throttle(error):
        return job_error(None, None, classify(error))  # no connection: a throttle never marks one

    deferred = retry_after_throttle(Throttled(429, "TooManyRequests", "slow down", 7.0))
    assert isinstance(deferred, Deferred) and (deferred.reason, deferred.retry_after) == ("throttled", 7.0)
    for error in (Throttled(429, "TooManyRequests", "slow down", None), Throttled(503, "x", "busy", 7.0),
                  Throttled(0, "network_error", "ConnectionError", None)):
        assert not isinstance(retry_after_throttle(error), Deferred)
    assert retry_after_throttle(Throttled(503, "x", "busy", 7.0)).reason == "graph_503"
