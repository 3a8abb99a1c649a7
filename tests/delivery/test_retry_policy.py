"""The backoff policy: full jitter, Retry-After as a floor, FCM quota backoff from 60 s, max attempts."""

from __future__ import annotations

from tidings.delivery.retry import RetryPolicy, is_quota


def test_full_jitter_stays_within_the_exponential_window() -> None:
    top = RetryPolicy(base=2.0, cap=100.0, random=lambda: 0.999999)
    bottom = RetryPolicy(base=2.0, cap=100.0, random=lambda: 0.0)
    assert [round(top.delay(a), 2) for a in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert top.delay(20) <= 100.0  # capped
    assert bottom.delay(3) == 0.0  # full jitter reaches down to zero


def test_retry_after_is_a_floor_never_shortened() -> None:
    policy = RetryPolicy(random=lambda: 0.0)
    assert policy.delay(1, retry_after=30) == 30
    assert RetryPolicy(base=100, random=lambda: 0.9).delay(1, retry_after=5) == 90  # backoff longer: kept
    assert policy.delay(1, retry_after=10**9) == 86_400  # absurd asks are capped at a day


def test_fcm_quota_backoff_starts_at_60_seconds() -> None:
    policy = RetryPolicy(random=lambda: 0.0)
    assert is_quota("QUOTA_EXCEEDED") and is_quota("fcm 429 quota_exceeded") and not is_quota("UNAVAILABLE")
    assert policy.delay(1, reason="QUOTA_EXCEEDED") == 60
    assert policy.delay(2, reason="QUOTA_EXCEEDED") == 120
    assert RetryPolicy(random=lambda: 0.999).delay(1, reason="QUOTA_EXCEEDED") < 90


def test_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(1) and policy.should_retry(2) and not policy.should_retry(3)
