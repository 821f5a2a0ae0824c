"""The Redis broker's outbox: order, bounds, and what a failed publish puts back."""

from __future__ import annotations

import logging

import pytest

from trustmess.cluster.outbox import Outbox


def fill(outbox: Outbox, *names: str, control: bool = False, volatile: bool = False) -> None:
    for name in names:
        outbox.add("ch", name.encode(), volatile=volatile, control=control)


def names(batch: list) -> list[str]:
    return [item.data.decode() for item in batch]


def test_events_leave_in_publication_order_across_both_queues() -> None:
    outbox = Outbox()
    fill(outbox, "e1")
    fill(outbox, "c1", control=True)
    fill(outbox, "e2", "e3")
    fill(outbox, "c2", control=True)
    assert len(outbox) == 5
    assert names(outbox.take(3)) == ["e1", "c1", "e2"]
    assert names(outbox.take(10)) == ["e3", "c2"]
    assert outbox.take(10) == [] and len(outbox) == 0


def test_past_the_event_bound_the_oldest_go_but_control_operations_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = Outbox(events=3, control_events=10)
    fill(outbox, "kick", control=True)
    fill(outbox, *(f"e{n}" for n in range(1, 8)))
    assert outbox.dropped == 4
    assert names(outbox.take(10)) == ["kick", "e5", "e6", "e7"]
    # One warning when the overflow starts; the count is reported once and then reset.
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert outbox.take_overflow() == 4 and outbox.take_overflow() == 0


def test_the_byte_bound_counts_what_is_queued() -> None:
    outbox = Outbox(max_bytes=10)
    fill(outbox, "aaaa", "bbbb", "cccc")  # 12 bytes: the oldest goes
    assert names(outbox.take(10)) == ["bbbb", "cccc"]
    fill(outbox, "dddd", "eeee")
    assert outbox.dropped == 1


def test_a_full_control_queue_drops_its_oldest_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = Outbox(control_events=2)
    for line in (b"hdr\n" + b"op1", b"hdr\n" + b"op2", b"hdr\n" + b"op3"):
        outbox.add("ctl", line, volatile=False, control=True)
    assert outbox.dropped == 1
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "op1" in error.getMessage()


def test_a_failed_batch_goes_back_in_front_in_order_without_typing() -> None:
    outbox = Outbox()
    fill(outbox, "e1")
    fill(outbox, "typing", volatile=True)
    fill(outbox, "c1", control=True)
    fill(outbox, "e2")
    batch = outbox.take(3)
    fill(outbox, "e3")  # published while the batch was failing
    outbox.put_back(batch)
    assert outbox.dropped == 1  # typing is stale by the retry
    assert names(outbox.take(10)) == ["e1", "c1", "e2", "e3"]


def test_put_back_respects_the_bound() -> None:
    outbox = Outbox(events=2)
    fill(outbox, "e1", "e2")
    batch = outbox.take(2)
    fill(outbox, "e3")
    outbox.put_back(batch)
    assert names(outbox.take(10)) == ["e2", "e3"]
