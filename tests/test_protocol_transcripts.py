"""Replays the golden session transcripts of ``protocol/examples/sessions/`` against the server.

A transcript is a ``.jsonl`` file, one JSON object per line:

* ``{"setup": {"users": [...], "groups": {"team": [...]}, "settings": {...}}}``, the first line:
  users and groups are created straight in the database (a group's first user owns it);
  ``settings`` overrides server settings, e.g. ``{"typing_timeout_s": 0.2}``.
* ``{"actor": "alice", "connect": "header" | "frame"}`` opens the actor's socket, with an
  ``Authorization`` header or without one (the transcript then sends ``auth`` itself); an actor
  whose first line is not ``connect`` is connected with the header before the first line runs.
  ``{"actor": "alice", "disconnect": true}`` closes it.
* ``{"actor": "alice", "send": frame}`` sends ``frame`` (any JSON value) as a text frame;
  ``"send_text": "..."`` sends the text as it is (for frames that are not JSON).
* ``{"actor": "alice", "recv": frame}``: the next frame the actor receives must be ``frame``.
* ``{"actor": "alice", "recv_any_order": [frame, ...]}``: the actor's next frames are these, in
  any order. The one relaxation of the strict per-actor order: on the sender's own socket the
  ``reply`` to a ``message`` and its ``message`` event may come either way round (README §3).
* A ``"#"`` key holds a note for readers; a line with nothing else is skipped.

Placeholders: ``"$alice.id"`` and ``"$team.id"`` become the real ids, ``"$token:alice"`` the
user's access token; in an expected frame ``"$any"`` matches any value and ``"$ts"`` an RFC 3339
UTC timestamp with milliseconds. Otherwise matching is exact: same keys (an undocumented field
fails), same values, same JSON types. Every receive waits at most 5 s. After the last line each
open socket must hold nothing unexpected: a ping's reply must be the very next frame.

Each ``text`` block of protocol/README.md §10 names the transcript and actor it shows; that
block must be that actor's frames from its last connection on, with the README's sample ids.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from tests.conftest import AppFactory, GroupFactory, User, UserFactory

PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "protocol"
SESSIONS_DIR = PROTOCOL_DIR / "examples" / "sessions"
TRANSCRIPTS = sorted(SESSIONS_DIR.glob("*.jsonl"))
README_PATH = PROTOCOL_DIR / "README.md"
RECV_TIMEOUT_S = 5.0
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
PLACEHOLDER = re.compile(r"\$(?:\w+\.id|token:\w+)")
# The sample values README §10 shows (user 42 is Ada, 51 Grace, conversation 7); no tokens.
README_VALUES = {"$ada.id": 42, "$grace.id": 51, "$team.id": 7, "$token:ada": "$any"}
README_BLOCK = re.compile(
    r"```text\n# replayed .*?examples/sessions/(\S+)\.jsonl, actor (\w+)\n(.*?)```", re.DOTALL
)

Json = Any
Line = tuple[int, dict[str, Json]]


def load(path: Path) -> list[Line]:
    """The transcript's ``(line number, object)`` pairs, note-only lines left out."""
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = json.loads(text) if text.strip() else {"#": ""}
        if set(line) != {"#"}:
            lines.append((number, line))
    return lines


def substitute(node: Json, values: dict[str, Json], where: str) -> Json:
    """Replace ``$name.id`` and ``$token:name`` placeholders; unknown names are an error."""
    if isinstance(node, dict):
        return {key: substitute(value, values, where) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(value, values, where) for value in node]
    if isinstance(node, str) and PLACEHOLDER.fullmatch(node):
        assert node in values, f"{where}: unknown placeholder {node!r}"
        return values[node]
    return node


def matches(expected: Json, actual: Json) -> bool:
    """Exact equality (keys, values, JSON types), except for ``$any`` and ``$ts``."""
    if expected == "$any":
        return True
    if expected == "$ts":
        return isinstance(actual, str) and TIMESTAMP.fullmatch(actual) is not None
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(value, actual[key]) for key, value in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(map(matches, expected, actual))
        )
    return type(expected) is type(actual) and expected == actual


def show(frame: Json) -> str:
    return json.dumps(frame, ensure_ascii=False)


class Replay:
    """Runs one transcript's lines against a live server, one socket per actor."""

    def __init__(self, name: str, client: TestClient[Any, Any], users: dict[str, User]) -> None:
        self.name = name
        self.client = client
        self.users = users
        self.values: dict[str, Json] = {}
        self.sockets: dict[str, ClientWebSocketResponse] = {}

    async def connect(self, actor: str, mode: str) -> None:
        assert mode in ("header", "frame"), f"{self.name}: bad connect mode {mode!r}"
        headers = self.users[actor].headers if mode == "header" else {}
        self.sockets[actor] = await self.client.ws_connect("/ws", headers=headers)

    async def receive(self, actor: str, where: str) -> Json:
        socket = self.sockets[actor]
        try:
            msg = await socket.receive(timeout=RECV_TIMEOUT_S)
        except TimeoutError:
            msg = None  # fail outside the handler, without a chained traceback
        assert msg is not None, f"{where}: {actor} received nothing within {RECV_TIMEOUT_S} s"
        assert msg.type == WSMsgType.TEXT, f"{where}: {actor}'s socket closed ({socket.close_code})"
        return json.loads(msg.data)

    async def run(self, number: int, line: dict[str, Json]) -> None:
        where = f"{self.name}.jsonl line {number}"
        line = substitute(line, self.values, where)
        actor = line["actor"]
        if "connect" in line:
            await self.connect(actor, line["connect"])
        elif "disconnect" in line:
            await self.sockets.pop(actor).close()
        elif "send" in line:
            await self.sockets[actor].send_str(json.dumps(line["send"]))
        elif "send_text" in line:
            await self.sockets[actor].send_str(line["send_text"])
        elif "recv" in line:
            expected = line["recv"]
            actual = await self.receive(actor, where)
            assert matches(expected, actual), (
                f"{where}: {actor} received an unexpected frame\n"
                f"expected: {show(expected)}\nactual:   {show(actual)}"
            )
        elif "recv_any_order" in line:
            expected = line["recv_any_order"]
            actual = [await self.receive(actor, where) for _ in expected]
            assert any(
                all(map(matches, expected, order)) for order in itertools.permutations(actual)
            ), (
                f"{where}: {actor}'s next frames are not these in any order\n"
                f"expected: {show(expected)}\nactual:   {show(actual)}"
            )
        else:
            raise ValueError(f"{where}: unknown line {show(line)}")

    async def finish(self) -> None:
        """Nothing unexpected is left: a ping's reply is each open socket's next frame."""
        for actor, socket in self.sockets.items():
            ref = f"end-{uuid.uuid4().hex[:8]}"
            await socket.send_str(json.dumps({"type": "ping", "ref": ref}))
            expected = {"type": "reply", "ref": ref, "data": {}}
            actual = await self.receive(actor, f"{self.name}.jsonl end")
            assert actual == expected, (
                f"{self.name}.jsonl end: {actor} received a frame the transcript does not show\n"
                f"expected: {show(expected)}\nactual:   {show(actual)}"
            )


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda path: path.stem)
async def test_session_transcript_replays(
    path: Path, make_client: AppFactory, make_user: UserFactory, make_group: GroupFactory
) -> None:
    (_, first), *lines = load(path)
    setup = first["setup"]
    client = await make_client(**setup.get("settings", {}))
    users = {name: await make_user(name) for name in setup["users"]}
    replay = Replay(path.stem, client, users)
    for name, user in users.items():
        replay.values |= {f"${name}.id": user.id, f"$token:{name}": user.token}
    for group, members in setup.get("groups", {}).items():
        replay.values[f"${group}.id"] = await make_group(*(users[m] for m in members))
    for actor in dict.fromkeys(line["actor"] for _, line in lines):
        if "connect" not in next(line for _, line in lines if line["actor"] == actor):
            await replay.connect(actor, "header")
    for number, line in lines:
        await replay.run(number, line)
    await replay.finish()


# ---------------------------------------------------------------- README §10 ↔ transcripts


def last_connection_frames(lines: list[Line], actor: str) -> list[tuple[str, Json]]:
    """The actor's frames since its last ``connect``, as README shows them (``>``/``<``)."""
    frames: list[tuple[str, Json]] = []
    for _, line in lines:
        if line.get("actor") != actor:
            continue
        if "connect" in line:
            frames = []
        for key, direction in (("send", ">"), ("send_text", ">"), ("recv", "<")):
            if key in line:
                frames.append((direction, line[key]))
        frames += [("<", frame) for frame in line.get("recv_any_order", [])]
    return frames


def readme_blocks() -> list[tuple[str, str, list[tuple[str, Json]]]]:
    """``(transcript, actor, frames)`` of each README block that names its transcript."""
    blocks = []
    for name, actor, body in README_BLOCK.findall(README_PATH.read_text(encoding="utf-8")):
        frames = []
        for text in body.splitlines():
            direction, _, frame = text.partition(" ")
            if direction in (">", "<"):
                frames.append((direction, json.loads(frame) if frame[:1] == "{" else frame))
        blocks.append((name, actor, frames))
    return blocks


@pytest.mark.parametrize("block", readme_blocks(), ids=lambda block: f"{block[0]}-{block[1]}")
def test_readme_transcript_is_the_golden_session(
    block: tuple[str, str, list[tuple[str, Json]]],
) -> None:
    name, actor, shown = block
    golden = last_connection_frames(load(SESSIONS_DIR / f"{name}.jsonl"), actor)
    for index, ((direction, frame), (shown_direction, shown_frame)) in enumerate(
        zip(golden, shown, strict=False)
    ):
        expected = substitute(frame, README_VALUES, f"{name}.jsonl")
        assert direction == shown_direction and matches(expected, shown_frame), (
            f"README block of {name}.jsonl ({actor}), frame {index + 1} differs\n"
            f"golden: {direction} {show(expected)}\nREADME: {shown_direction} {show(shown_frame)}"
        )
    assert len(golden) == len(shown), f"{name}.jsonl has {len(golden)} frames, README {len(shown)}"


def test_readme_names_the_golden_sessions() -> None:
    assert {name for name, _, _ in readme_blocks()} == {"readme_session", "first_frame_auth"}
    assert len(TRANSCRIPTS) >= 7, TRANSCRIPTS
