"""trustmess.http.loginguard: failures, not attempts; familiar addresses pass the name's cap."""

from __future__ import annotations

import pytest

from tests.unit.conftest import FakeClock, install_fake_clock
from trustmess.errors import ApiError
from trustmess.gateway import ratelimit
from trustmess.http import loginguard
from trustmess.http.loginguard import KnownAddresses, LoginGuard
from trustmess.settings import Settings


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return install_fake_clock(monkeypatch, ratelimit, loginguard)


def guard(**changes: object) -> LoginGuard:
    base = {"auth_rate_per_s": 0.001, "auth_burst": 3, "login_failure_rate_per_s": 0.001}
    return LoginGuard(Settings(**{**base, "login_failure_burst": 4, **changes}))


def test_a_right_password_costs_nothing(clock: FakeClock) -> None:
    g = guard()
    for _ in range(50):
        g.refund(g.before_check("ada", "10.0.0.1"))
    g.before_check("ada", "10.0.0.1")  # still allowed


def test_failures_per_address_then_per_name_for_unfamiliar_addresses(clock: FakeClock) -> None:
    g = guard()
    g.signed_in("ada", "10.0.0.9")
    for _ in range(3):
        g.before_check("ada", "10.0.0.1")  # three failures from one address
    with pytest.raises(ApiError) as here:
        g.before_check("ada", "10.0.0.1")
    assert here.value.status == 429
    g.before_check("ada", "10.0.0.2")  # the fourth failure of the name
    with pytest.raises(ApiError):
        g.before_check("ada", "10.0.0.3")  # a new address: held back
    g.refund(g.before_check("ada", "10.0.0.9"))  # her familiar address: let through
    g.before_check("grace", "10.0.0.3")  # another name: untouched


def test_a_refused_check_spends_nothing(clock: FakeClock) -> None:
    g = guard(login_failure_burst=1)
    g.before_check("ada", "10.0.0.1")  # the name's one failure
    for _ in range(5):
        with pytest.raises(ApiError):
            g.before_check("ada", "10.0.0.2")
    clock.now += 1000  # one failure of the name refilled
    g.before_check("ada", "10.0.0.2")  # the refusals above did not use up this address


def test_impossible_names_share_one_key(clock: FakeClock) -> None:
    g = guard(auth_burst=1000, login_failure_burst=1000)
    for n in range(200):
        g.before_check("x" * 500 + str(n), "10.0.0.1")
    assert len(g.failures._buckets) == 1
    assert len(g.failures_here._buckets) == 1


def test_known_addresses_expire_and_are_bounded(clock: FakeClock) -> None:
    known = KnownAddresses(ttl_s=100, max_pairs=2)
    known.remember("ada 1")
    clock.now += 50
    known.remember("ada 2")
    known.remember("ada 3")  # forgets "ada 1", the least recently signed in
    assert not known.knows("ada 1") and known.knows("ada 2") and known.knows("ada 3")
    clock.now += 100
    assert not known.knows("ada 2")
