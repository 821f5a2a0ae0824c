"""RevokedSessions: membership, keeping an entry exactly as long as a token may live, rebuild."""

from __future__ import annotations

from trustmess.gateway.revocation import PRUNE_EVERY_S, RevokedSessions

A, B, C = "a" * 32, "b" * 32, "c" * 32


def test_a_revoked_session_is_in_the_set_until_its_tokens_expired() -> None:
    revoked = RevokedSessions(keep_s=900)
    revoked.revoke([A], now=1000.0)
    assert A in revoked and B not in revoked
    revoked.prune(1000.0 + 899)
    assert A in revoked
    revoked.prune(1000.0 + 900)
    assert A not in revoked and len(revoked) == 0


def test_revoking_again_keeps_the_first_end() -> None:
    revoked = RevokedSessions(keep_s=10)
    revoked.revoke([A], now=0.0)
    revoked.revoke([A], now=5.0)
    revoked.prune(10.0)
    assert A not in revoked


def test_revoke_prunes_now_and_then() -> None:
    revoked = RevokedSessions(keep_s=10)
    revoked.revoke([A], now=revoked._pruned)
    revoked.revoke([B], now=revoked._pruned + PRUNE_EVERY_S)
    assert A not in revoked and B in revoked


def test_replace_keeps_what_arrived_during_the_rebuild() -> None:
    revoked = RevokedSessions(keep_s=100)
    revoked.revoke([C], now=50.0)  # a control operation while the query ran
    revoked.replace([(A, 40.0), (B, -500.0)], now=60.0)
    assert A in revoked and C in revoked
    assert B not in revoked  # ended too long ago to matter
