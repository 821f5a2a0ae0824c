"""trustmess.gateway.ratelimit: token buckets, per connection and per key, on a fake clock."""

from __future__ import annotations

import pytest

from tests.unit.conftest import FakeClock, install_fake_clock
from trustmess.gateway import ratelimit
from trustmess.gateway.ratelimit import KeyedRateLimiter, TokenBucket, UserBudget


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return install_fake_clock(monkeypatch, ratelimit)


# ---------------------------------------------------------------- TokenBucket


def test_a_full_bucket_allows_the_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=1.0, burst=3, now=0.0)
    assert [bucket.take(now=0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=1, now=0.0)
    assert bucket.take(now=0.0)
    assert not bucket.take(now=0.25)  # half a token
    assert bucket.take(now=0.5)  # 0.5 + 0.5 refilled
    assert not bucket.take(now=0.5)


def test_refill_stops_at_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert [bucket.take(now=3600.0) for _ in range(3)] == [True, True, False]


def test_a_refused_take_does_not_spend() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert bucket.take(now=0.0)
    for moment in (0.1, 0.2, 0.3, 0.9):
        assert not bucket.take(now=moment)
    assert bucket.take(now=1.0)


def test_retry_after_is_the_time_to_the_next_token() -> None:
    bucket = TokenBucket(rate=4.0, burst=1, now=0.0)
    assert bucket.retry_after(now=0.0) == 0.0
    assert bucket.take(now=0.0)
    assert bucket.retry_after(now=0.0) == pytest.approx(0.25)
    assert bucket.retry_after(now=0.125) == pytest.approx(0.125)
    assert bucket.retry_after(now=1.0) == 0.0
    assert bucket.take(now=1.0)


def test_the_clock_defaults_to_monotonic_time(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take()
    assert not bucket.take()
    assert bucket.retry_after() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.take()


# ---------------------------------------------------------------- KeyedRateLimiter


def test_each_key_has_its_own_bucket(clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(rate=0.5, burst=2)
    assert limiter.take("alice") is None
    assert limiter.take("alice") is None
    assert limiter.take("alice") == pytest.approx(2.0)
    assert limiter.take("bob") is None
    clock.now += 1.5
    assert limiter.take("alice") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("alice") is None


def test_the_least_recently_used_key_is_forgotten(clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(rate=0.001, burst=1, max_keys=2)
    assert limiter.take("a") is None
    assert limiter.take("b") is None
    assert limiter.take("a") is not None  # a is now the most recently used
    assert limiter.take("c") is None  # evicts b, not a
    assert limiter.take("a") is not None
    assert limiter.take("b") is None  # a fresh bucket: b was forgotten (and c now is)
    assert limiter.take("a") is not None


def test_memory_stays_bounded(clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1, max_keys=10)
    for number in range(1000):
        limiter.take(f"10.0.0.{number}")
    assert len(limiter._buckets) == 10


# ---------------------------------------------------------------- UserBudget


def test_a_user_budget_is_one_bucket_per_user(clock: FakeClock) -> None:
    budget = UserBudget(rate=1.0, burst=2)
    assert [budget.take(7) for _ in range(3)] == [True, True, False]
    assert budget.retry_after(7) == pytest.approx(1.0)
    assert budget.take(8)  # another user
    assert budget.retry_after(9) == 0.0  # never seen: nothing to wait for
    clock.now += 1.0
    assert budget.take(7)


def test_a_user_budget_forgets_only_full_buckets(clock: FakeClock) -> None:
    budget = UserBudget(rate=1.0, burst=2, max_users=3)
    for user in (1, 2, 3):
        assert budget.take(user)
    clock.now += 0.5  # nobody is full yet: all are kept, and the threshold grows
    assert budget.take(4)
    assert len(budget._buckets) == 4
    assert budget.take(1) and not budget.take(1)  # user 1's bucket survived, now empty
    clock.now += 10  # everyone refilled
    for user in range(5, 12):
        budget.take(user)
    assert len(budget._buckets) <= 8
    assert budget.take(1) and budget.take(1)  # a fresh bucket is a full one
