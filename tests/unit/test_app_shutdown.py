"""A shutdown step that never finishes is logged by name and left behind: stopping ends."""

from __future__ import annotations

import asyncio

import pytest

from trustmess import app


async def test_a_stuck_shutdown_step_is_named_and_left_behind(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app, "SHUTDOWN_STEP_S", 0.05)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await asyncio.wait_for(app._stop("the stuck part", never), 5)
    assert never.cancelled()
    assert "shutdown: the stuck part did not finish within 0.05 s" in caplog.text

    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    await app._stop("a quick part", quick())
    assert done == ["ran"] and "a quick part" not in caplog.text
