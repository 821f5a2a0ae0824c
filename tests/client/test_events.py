"""Every documented server event (each example in protocol/examples/valid/) parses into its
typed event, with every field of the frame carried over; and the close-code table of §7."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from trustmess.client import (
    Change,
    ContactChange,
    Conversation,
    ConversationUpdate,
    InvitationChange,
    Message,
    Presence,
    Read,
    Removed,
    Typing,
    UnknownEvent,
    parse_event,
)
from trustmess.client.reconnect import CloseAction, ReconnectPolicy, close_action

EXAMPLES = Path(__file__).resolve().parents[2] / "protocol" / "examples" / "valid"
EVENT_CLASSES = {
    "message": Message,
    "change": Change,
    "read": Read,
    "typing": Typing,
    "conversation": Conversation,
    "conversation_update": ConversationUpdate,
    "removed": Removed,
    "contact": ContactChange,
    "invitation": InvitationChange,
    "presence": Presence,
}
# Frames that answer commands or open the connection: the session handles them, not events().
NOT_EVENTS = {"hello", "reply", "error"}
EXAMPLE_FILES = sorted(EXAMPLES.glob("server.*.json"))


def plain(value: Any) -> Any:
    """A parsed value back in JSON's shapes, to compare with the frame."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def carries(parsed: Any, sent: Any) -> bool:
    """Every field sent is in ``parsed`` with its value (parsed objects add absent fields)."""
    if isinstance(sent, dict):
        return isinstance(parsed, dict) and all(
            key in parsed and carries(parsed[key], value) for key, value in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(parsed, list)
            and len(parsed) == len(sent)
            and all(carries(p, s) for p, s in zip(parsed, sent, strict=True))
        )
    return bool(parsed == sent)


def test_every_event_type_of_the_asyncapi_document_has_a_class() -> None:
    documented = {json.loads(p.read_text())["frame"]["type"] for p in EXAMPLE_FILES}
    assert documented - NOT_EVENTS == set(EVENT_CLASSES)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_documented_events_parse_into_their_class(path: Path) -> None:
    frame = json.loads(path.read_text())["frame"]
    if frame["type"] in NOT_EVENTS:
        return
    event = parse_event(frame)
    assert type(event) is EVENT_CLASSES[frame["type"]], event
    assert carries(plain(event), {k: v for k, v in frame.items() if k != "type"})
    if isinstance(event, Message):
        # Absent optional fields have their documented meaning.
        assert event.deleted is frame.get("deleted", False)


def test_unknown_and_unreadable_frames_become_unknown_events() -> None:
    assert parse_event({"type": "presence", "user_id": 1}) == UnknownEvent(
        "presence", {"type": "presence", "user_id": 1}
    )
    assert isinstance(parse_event({"type": "read", "seq": "x"}), UnknownEvent)
    assert parse_event({}) == UnknownEvent("None", {})


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (1000, CloseAction.STOP),
        (1001, CloseAction.RECONNECT),
        (1006, CloseAction.RECONNECT),
        (None, CloseAction.RECONNECT),
        (1008, CloseAction.STOP),
        (1009, CloseAction.STOP),
        (1011, CloseAction.RECONNECT),
        (4001, CloseAction.REFRESH),
        (4002, CloseAction.REFRESH),
        (4006, CloseAction.STOP),
        (4008, CloseAction.SLOW_DOWN),
        (4009, CloseAction.RECONNECT),
        (4999, CloseAction.RECONNECT),
    ],
)
def test_close_codes_follow_the_table(code: int | None, action: CloseAction) -> None:
    assert close_action(code) is action


def test_backoff_is_jittered_within_its_cap() -> None:
    policy = ReconnectPolicy(base_s=0.5, cap_s=4.0)
    delays = [policy.delay(attempt) for attempt in range(10) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(policy.delay(0) for _ in range(200)) <= 0.5
    assert len(set(delays)) > 400  # random, not a fixed schedule
