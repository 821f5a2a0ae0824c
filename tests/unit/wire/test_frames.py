"""trustmess.wire.frames: client frame bytes → typed command or FrameError; server frames → bytes.

Besides hand-written cases, every client frame the protocol documents (``protocol/examples/``:
the valid and invalid examples and the frames sent in the session transcripts) is decoded here,
so the codec and the documentation cannot drift apart without a server running.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustmess.errors import ErrorCode
from trustmess.wire import events, frames
from trustmess.wire.frames import (
    Ack,
    Auth,
    ChangeMessage,
    Command,
    FrameError,
    Join,
    Leave,
    Ping,
    PresenceSubscribe,
    SendMessage,
    Typing,
    decode,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "protocol" / "examples"
COMMAND_CLASSES: dict[str, type[Command]] = {
    "client.auth": Auth,
    "client.join": Join,
    "client.leave": Leave,
    "client.message": SendMessage,
    "client.edit": ChangeMessage,
    "client.delete": ChangeMessage,
    "client.react": ChangeMessage,
    "client.unreact": ChangeMessage,
    "client.ack": Ack,
    "client.typing": Typing,
    "client.ping": Ping,
    "client.presence": PresenceSubscribe,
}
COMMAND_TYPES = (
    Auth,
    Join,
    Leave,
    SendMessage,
    ChangeMessage,
    Ack,
    Typing,
    Ping,
    PresenceSubscribe,
)
TYPE_NAMES = (
    "auth",
    "join",
    "leave",
    "message",
    "edit",
    "delete",
    "react",
    "unreact",
    "ack",
    "typing",
    "ping",
    "presence",
)
# Codes that say "this frame is not a valid command" (the rest need the server's state).
REJECTION_CODES = {
    ErrorCode.BAD_FRAME,
    ErrorCode.UNKNOWN_TYPE,
    ErrorCode.INVALID,
    ErrorCode.TOO_LARGE,
}

Json = Any


def dumps(frame: Json) -> bytes:
    return json.dumps(frame).encode()


def rejected(frame: Json) -> FrameError:
    result = decode(dumps(frame))
    assert isinstance(result, FrameError), result
    return result


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("frame", "command"),
    [
        ({"type": "auth", "ref": "a1", "token": "t0k"}, Auth("a1", "t0k")),
        ({"type": "join", "ref": 1, "conversation_id": 7}, Join(1, 7, None)),
        ({"type": "join", "conversation_id": 7, "since": 0}, Join(None, 7, 0)),
        ({"type": "join", "conversation_id": 7, "since": None}, Join(None, 7, None)),
        ({"type": "leave", "conversation_id": 7}, Leave(None, 7)),
        (
            {
                "type": "message",
                "ref": "m",
                "conversation_id": 7,
                "client_msg_id": "a_-1",
                "body": "hi",
            },
            SendMessage("m", 7, "a_-1", "hi", None),
        ),
        (
            {
                "type": "message",
                "conversation_id": 7,
                "client_msg_id": "x",
                "body": " hi\n",
                "reply_to": 3,
            },
            SendMessage(None, 7, "x", "hi", 3),
        ),
        (
            {
                "type": "message",
                "conversation_id": 7,
                "client_msg_id": "x",
                "body": "hi",
                "reply_to": None,
            },
            SendMessage(None, 7, "x", "hi", None),
        ),
        ({"type": "ack", "conversation_id": 7, "seq": 0}, Ack(None, 7, 0)),
        ({"type": "typing", "conversation_id": 7}, Typing(None, 7, "start")),
        ({"type": "typing", "conversation_id": 7, "state": None}, Typing(None, 7, "start")),
        ({"type": "typing", "conversation_id": 7, "state": "stop"}, Typing(None, 7, "stop")),
        ({"type": "ping"}, Ping(None)),
        ({"type": "ping", "ref": None}, Ping(None)),
        ({"type": "presence"}, PresenceSubscribe(None)),
        ({"type": "presence", "ref": "p"}, PresenceSubscribe("p")),
    ],
)
def test_decode_returns_the_typed_command(frame: Json, command: Command) -> None:
    assert decode(dumps(frame)) == command


def test_decode_takes_text_as_well_as_bytes() -> None:
    assert decode('{"type":"ping","ref":"é"}') == Ping("é")


def test_body_of_max_length_after_stripping_is_accepted() -> None:
    body = "  " + "é" * 4000 + "\n"
    result = decode(
        dumps({"type": "message", "conversation_id": 1, "client_msg_id": "a", "body": body})
    )
    assert isinstance(result, SendMessage)
    assert result.body == "é" * 4000


# ---------------------------------------------------------------- ref


@pytest.mark.parametrize("ref", ["", "r" * 64, 0, 2**53 - 1, -(2**53 - 1)])
def test_refs_within_the_documented_range_are_echoed(ref: str | int) -> None:
    assert decode(dumps({"type": "ping", "ref": ref})) == Ping(ref)


@pytest.mark.parametrize("ref", ["r" * 65, 2**53, -(2**53), True, False, 1.5, [1], {"id": 1}])
def test_an_unreadable_ref_is_invalid_and_not_echoed(ref: Json) -> None:
    error = rejected({"type": "ping", "ref": ref})
    assert (error.ref, error.code, error.field) == (None, ErrorCode.INVALID, "ref")


def test_errors_after_the_ref_was_read_carry_it() -> None:
    assert rejected({"type": "nope", "ref": "r1"}).ref == "r1"
    assert rejected({"ref": 5}).ref == 5
    assert rejected({"type": "join", "ref": "r2", "conversation_id": "7"}).ref == "r2"


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "frame is not valid JSON"),
        (b"hello?", "frame is not valid JSON"),
        (b'{"type": "ping"', "frame is not valid JSON"),
        (b"\xff\xfe", "frame is not valid JSON"),
        (b'"\\ud800"', "frame is not valid JSON"),
        (b"null", "frame must be a JSON object"),
        (b'["ping"]', "frame must be a JSON object"),
        (b"7", "frame must be a JSON object"),
        (b'{"kind": "ping"}', "frame needs a string 'type'"),
        (b'{"type": null}', "frame needs a string 'type'"),
        (b'{"type": ["ping"]}', "frame needs a string 'type'"),
    ],
)
def test_bad_frames(raw: bytes, message: str) -> None:
    result = decode(raw)
    assert result == FrameError(None, ErrorCode.BAD_FRAME, message)


def test_unknown_type_names_the_type_shortened() -> None:
    error = rejected({"type": "Ping"})
    assert (error.code, error.message) == (ErrorCode.UNKNOWN_TYPE, "unknown type 'Ping'")
    long = rejected({"type": "x" * 1000})
    assert long.code == ErrorCode.UNKNOWN_TYPE
    assert long.message == f"unknown type {'x' * 64!r}"


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"type": "join", "conversation_id": True}, "conversation_id"),
        ({"type": "join", "conversation_id": 0}, "conversation_id"),
        ({"type": "join", "conversation_id": 2**63}, "conversation_id"),
        ({"type": "join", "conversation_id": 7.0}, "conversation_id"),
        ({"type": "join", "conversation_id": 7, "since": False}, "since"),
        ({"type": "leave"}, "conversation_id"),
        ({"type": "ack", "conversation_id": 7, "seq": -1}, "seq"),
        ({"type": "ack", "conversation_id": 7, "seq": None}, "seq"),
        ({"type": "auth", "token": ""}, "token"),
        ({"type": "auth", "token": None}, "token"),
        ({"type": "auth", "token": "x" * 4097}, "token"),
        ({"type": "auth", "token": "a\x00b"}, "token"),
        ({"type": "typing", "conversation_id": 7, "state": "starting"}, "state"),
        ({"type": "typing", "conversation_id": 7, "state": 1}, "state"),
        ({"type": "message", "conversation_id": 7, "client_msg_id": "a", "body": "a\x00"}, "body"),
        ({"type": "message", "conversation_id": 7, "client_msg_id": "a", "body": None}, "body"),
        (
            {"type": "message", "conversation_id": 7, "client_msg_id": "a b", "body": "x"},
            "client_msg_id",
        ),
        (
            {"type": "message", "conversation_id": 7, "client_msg_id": 5, "body": "x"},
            "client_msg_id",
        ),
        (
            {"type": "message", "conversation_id": 7, "client_msg_id": "é", "body": "x"},
            "client_msg_id",
        ),
        ({"type": "ping", "data": 1}, "data"),
    ],
)
def test_invalid_fields_are_named(frame: Json, field: str) -> None:
    error = rejected(frame)
    assert (error.code, error.field) == (ErrorCode.INVALID, field)
    assert error.message.startswith(f"{field}: ")


def test_a_body_too_long_after_stripping_is_too_large() -> None:
    frame = {"type": "message", "conversation_id": 7, "client_msg_id": "a", "body": "a" * 4001}
    error = rejected(frame)
    assert (error.code, error.field) == (ErrorCode.TOO_LARGE, "body")


# ---------------------------------------------------------------- encoders


def test_reply_frame() -> None:
    assert orjson.loads(frames.reply("r", {"x": 1})) == {
        "type": "reply",
        "ref": "r",
        "data": {"x": 1},
    }


def test_error_frame_leaves_out_absent_ref_and_field() -> None:
    assert orjson.loads(frames.error(None, ErrorCode.BAD_FRAME, "no")) == {
        "type": "error",
        "code": "bad_frame",
        "message": "no",
    }
    assert orjson.loads(frames.error(0, ErrorCode.INVALID, "seq: bad", "seq")) == {
        "type": "error",
        "ref": 0,
        "code": "invalid",
        "message": "seq: bad",
        "field": "seq",
    }


def test_error_from_a_decode_failure() -> None:
    failure = rejected({"type": "join", "ref": 9, "conversation_id": "7"})
    assert orjson.loads(frames.error_from(failure)) == {
        "type": "error",
        "ref": 9,
        "code": "invalid",
        "message": "conversation_id: must be an integer",
        "field": "conversation_id",
    }


def test_server_events_are_compact_json() -> None:
    assert events.typing(7, 3, "start") == (
        b'{"type":"typing","conversation_id":7,"user_id":3,"state":"start"}'
    )
    assert events.removed(7) == b'{"type":"removed","conversation_id":7}'


# ---------------------------------------------------------------- protocol/examples/{valid,invalid}


def load_json(path: Path) -> Json:
    return json.loads(path.read_text(encoding="utf-8"))


VALID_CLIENT_EXAMPLES = sorted((EXAMPLES_DIR / "valid").glob("client.*.json"))
INVALID_EXAMPLES = sorted((EXAMPLES_DIR / "invalid").glob("*.json"))


def test_the_examples_are_found() -> None:
    assert len(VALID_CLIENT_EXAMPLES) >= len(COMMAND_CLASSES)
    assert len(INVALID_EXAMPLES) >= 20


@pytest.mark.parametrize("path", VALID_CLIENT_EXAMPLES, ids=lambda path: path.stem)
def test_valid_client_example_decodes_to_its_command(path: Path) -> None:
    example = load_json(path)
    command = decode(dumps(example["frame"]))
    assert isinstance(command, COMMAND_CLASSES[example["message"]]), command
    for name, value in example["frame"].items():
        if name != "type":
            assert getattr(command, name) == value, name
    if isinstance(command, ChangeMessage):
        assert command.kind == example["frame"]["type"]


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=lambda path: path.stem)
def test_invalid_example_is_rejected_with_its_documented_code(path: Path) -> None:
    example = load_json(path)
    error = rejected(example["frame"])
    assert error.code == example["code"]
    assert error.field == example.get("field")


# ---------------------------------------------------------------- protocol/examples/sessions

PLACEHOLDER = re.compile(r"\$(\w+)\.id|\$token:(\w+)")
# Answers that need the server's state (membership, stored seqs, tokens): decode cannot know
# them, so a frame answered with one must decode to a command. (code, message pattern)
STATEFUL_ERRORS = [
    ("not_found", r"conversation not found"),
    ("unauthenticated", r".+"),
    ("invalid", r"reply_to: must be an existing seq of the conversation"),
    ("invalid", r"seq: is beyond the last message \(\d+\)"),
]


def substitute(node: Json) -> Json:
    """Transcript placeholders → plausible values (ids 7, tokens ``token-<name>``)."""
    if isinstance(node, dict):
        return {key: substitute(value) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(value) for value in node]
    if isinstance(node, str):
        match = PLACEHOLDER.fullmatch(node)
        if match:
            return 7 if match[1] else f"token-{match[2]}"
    return node


def answer_error(lines: list[Json], index: int) -> Json | None:
    """The error frame the transcript shows as the answer to the frame sent at ``index``.

    The answer is looked for among what the same actor receives before it sends again (the
    transcripts wait for each answer): an error echoing the frame's ref, or one without ref.
    """
    actor, sent = lines[index]["actor"], lines[index].get("send")
    ref = sent.get("ref") if isinstance(sent, dict) else None
    for line in lines[index + 1 :]:
        if line.get("actor") != actor:
            continue
        if {"send", "send_text", "connect", "disconnect"} & line.keys():
            return None
        received = [line["recv"]] if "recv" in line else line.get("recv_any_order", [])
        for frame in received:
            if frame.get("type") == "error" and frame.get("ref") in (None, ref):
                return frame
    return None


def transcript_client_frames() -> Iterator[Any]:
    for path in sorted((EXAMPLES_DIR / "sessions").glob("*.jsonl")):
        texts = path.read_text(encoding="utf-8").splitlines()
        lines = [substitute(json.loads(text)) if text.strip() else {} for text in texts]
        for index, line in enumerate(lines):
            if "send" in line:
                raw = dumps(line["send"])
            elif "send_text" in line:
                raw = line["send_text"].encode()
            else:
                continue
            yield pytest.param(raw, answer_error(lines, index), id=f"{path.stem}:{index + 1}")


TRANSCRIPT_FRAMES = list(transcript_client_frames())


def test_the_transcripts_send_frames_both_good_and_bad() -> None:
    answers = [param.values[1] for param in TRANSCRIPT_FRAMES]
    assert len(answers) >= 50
    assert sum(answer is None for answer in answers) >= 30
    assert sum(answer is not None for answer in answers) >= 10


@pytest.mark.parametrize(("raw", "error"), TRANSCRIPT_FRAMES)
def test_transcript_client_frame_decodes_as_the_server_answers_it(
    raw: bytes, error: Json | None
) -> None:
    result = decode(raw)
    stateful = error is not None and any(
        error["code"] == code and re.fullmatch(pattern, error["message"])
        for code, pattern in STATEFUL_ERRORS
    )
    if error is None or stateful:
        assert isinstance(result, COMMAND_TYPES), result
        return
    assert isinstance(result, FrameError), f"decoded to {result}, but the server answers {error}"
    assert result.code == error["code"]
    # The whole error frame, as the socket would send it: ref, message and field too.
    assert orjson.loads(frames.error_from(result)) == error


# ---------------------------------------------------------------- properties

# Bounded so that all of them run in about two seconds; no example database on disk.
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = ["type", "ref", "token", "conversation_id", "since", "client_msg_id", "body"]
FIELD_NAMES += ["reply_to", "seq", "state", "extra"]
command_like = st.dictionaries(
    st.sampled_from(FIELD_NAMES),
    json_values | st.sampled_from(sorted(TYPE_NAMES)),
    max_size=7,
)


def check_decoded(result: object) -> None:
    assert isinstance(result, (*COMMAND_TYPES, FrameError)), result
    if isinstance(result, FrameError):
        assert result.code in REJECTION_CODES
        assert result.message
        frames.error_from(result)  # always encodable


@settings(PROPERTY_SETTINGS, max_examples=1000)
@given(st.binary(max_size=200))
def test_decode_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    check_decoded(decode(raw))


@PROPERTY_SETTINGS
@given(json_values)
def test_decode_never_raises_on_arbitrary_json(value: Json) -> None:
    check_decoded(decode(orjson.dumps(value)))


@PROPERTY_SETTINGS
@given(command_like)
def test_decode_never_raises_on_command_like_objects(frame: dict[str, Json]) -> None:
    result = decode(orjson.dumps(frame))
    check_decoded(result)
    if not isinstance(result, FrameError):
        assert frame["type"] in TYPE_NAMES


@PROPERTY_SETTINGS
@given(
    ref=st.none() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=64),
    conversation_id=st.integers(1, 2**63 - 1),
    client_msg_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    body=st.text(
        # Controls and format characters have rules of their own (test_validation.py); the
        # blank letters would make a text with nothing visible.
        alphabet=st.characters(
            blacklist_categories=("Cc", "Cs", "Cf"),
            blacklist_characters="\u115f\u1160\u3164\uffa0\u2800",
        ),
        min_size=1,
        max_size=50,
    ).filter(lambda s: any(unicodedata.category(c)[0] in "LNSP" for c in s)),
    reply_to=st.none() | st.integers(1, 2**63 - 1),
)
def test_any_valid_message_decodes_to_its_fields(
    ref: str | int | None, conversation_id: int, client_msg_id: str, body: str, reply_to: int | None
) -> None:
    frame = {
        "type": "message",
        "ref": ref,
        "conversation_id": conversation_id,
        "client_msg_id": client_msg_id,
        "body": body,
        "reply_to": reply_to,
    }
    expected = SendMessage(ref, conversation_id, client_msg_id, body.strip(), reply_to)
    assert decode(orjson.dumps(frame)) == expected
