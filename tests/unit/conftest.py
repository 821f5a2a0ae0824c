"""Helpers shared by the unit tests."""

from __future__ import annotations

from types import ModuleType

import pytest


class FakeClock:
    """Stands in for the ``time`` module a limiter reads ``monotonic()`` from."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def install_fake_clock(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> FakeClock:
    """One FakeClock as the ``time`` of every module given."""
    fake = FakeClock()
    for module in modules:
        monkeypatch.setattr(module, "time", fake)
    return fake
