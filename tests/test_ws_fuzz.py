"""Property-based fuzzing of the socket protocol against the real in-process server.

Hypothesis draws scripts of frames (random text and bytes, and valid commands with fields
mutated to any JSON value) sent over three users' sockets at once. Invariants after every
script: no ``internal`` error, nothing logged at ERROR (no traceback), every message command
answered; at the end every acknowledged message is stored exactly once with the seq its
reply gave, and the server still serves. Bounded: 150 scripts, about 10-20 s.

Hypothesis runs its (synchronous) test in a worker thread; each script is played on the
server's event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SocketClient

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
KINDS = ["join", "leave", "message", "ack", "typing", "ping", "auth"]
ERROR_CODES = {
    "bad_frame",
    "unknown_type",
    "invalid",
    "not_found",
    "rate_limited",
    "too_large",
    "unauthenticated",
    "unavailable",
}


def commands(cids: list[int]) -> st.SearchStrategy[Any]:
    """A valid-looking command with each field sometimes replaced, dropped or added."""
    cid = st.sampled_from(cids) | st.integers(-2, 2**63) | JSON
    plain = st.fixed_dictionaries(
        {"type": st.sampled_from(KINDS) | st.text(max_size=8) | JSON},
        optional={
            "conversation_id": cid,
            "since": st.integers(-1, 50) | JSON,
            "seq": st.integers(-1, 50) | JSON,
            "state": st.sampled_from(["start", "stop"]) | JSON,
            "token": st.text(max_size=20) | JSON,
            "ref": st.integers(0, 10) | st.text(max_size=70) | JSON,
            "body": st.text(max_size=30) | JSON,
            "client_msg_id": st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True) | JSON,
            "reply_to": st.integers(-1, 5) | JSON,
        },
    )
    extra = st.dictionaries(st.text(max_size=6), JSON, max_size=1)
    plain = st.tuples(plain, extra).map(lambda both: {**both[1], **both[0]})
    # Well-formed sends (their ref is ours, so each must be answered), with odd bodies.
    send = st.fixed_dictionaries(
        {
            "type": st.just("message"),
            "conversation_id": st.sampled_from(cids),
            "client_msg_id": st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True),
            "body": st.text(min_size=1, max_size=40).filter(str.strip) | st.just("x" * 4001),
        },
        optional={"reply_to": st.integers(1, 5)},
    )
    good_cid = st.sampled_from(cids)
    ref = st.none() | st.integers(0, 10) | st.text(max_size=8)
    valid = st.one_of(
        st.builds(
            lambda c, since, r: {"type": "join", "conversation_id": c, "since": since, "ref": r},
            good_cid,
            st.none() | st.integers(0, 30),
            ref,
        ),
        st.builds(lambda c, r: {"type": "leave", "conversation_id": c, "ref": r}, good_cid, ref),
        st.builds(
            lambda c, n, r: {"type": "ack", "conversation_id": c, "seq": n, "ref": r},
            good_cid,
            st.integers(0, 30),
            ref,
        ),
        st.builds(
            lambda c, state, r: {"type": "typing", "conversation_id": c, "state": state, "ref": r},
            good_cid,
            st.sampled_from(["start", "stop"]),
            ref,
        ),
        st.builds(lambda r: {"type": "ping", "ref": r}, ref),
    )
    return st.one_of(
        valid.map(lambda f: ("json", f)),
        valid.map(lambda f: ("json", f)),
        plain.map(lambda f: ("json", f)),
        send.map(lambda f: ("send", f)),
        send.map(lambda f: ("send", f)),
        st.text(max_size=60).map(lambda t: ("text", t)),
        st.binary(max_size=40).map(lambda b: ("bytes", b)),
    )


async def test_socket_protocol_fuzz(
    make_client, make_user, make_group, connect, db, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    client = await make_client(ws_rate_per_s=100_000.0, ws_burst=100_000)
    users = [await make_user() for _ in range(3)]
    shared = await make_group(*users)
    own = await make_group(users[0], users[1])  # users[2] is not a member
    cids = [shared, own]
    loop = asyncio.get_running_loop()
    acked: dict[tuple[int, int, str], int] = {}  # (conversation, sender, client_msg_id) -> seq
    refs = itertools.count()

    async def play(script: list[tuple[int, tuple[str, Any]]]) -> None:
        caplog.clear()  # each script answers for its own log
        socks = [await connect(u, test_client=client) for u in users]
        waiting: dict[str, tuple[int, dict[str, Any]]] = {}
        try:
            for who, (kind, frame) in script:
                ws = socks[who].ws
                if kind == "text":
                    await ws.send_str(frame)
                elif kind == "bytes":
                    await ws.send_bytes(frame)
                elif kind == "send":
                    ref = f"m{next(refs)}"
                    waiting[ref] = (who, frame)
                    await ws.send_str(orjson.dumps({**frame, "ref": ref}).decode())
                else:
                    await ws.send_str(json.dumps(frame))  # big ints too, unlike orjson
            for who, sock in enumerate(socks):
                answers = {r: w for r, (w, _) in waiting.items() if w == who}
                for ref in answers:
                    answer = await sock.recv_where(lambda f, r=ref: f.get("ref") == r, 10)
                    _, frame = waiting[ref]
                    if answer["type"] == "reply":
                        key = (frame["conversation_id"], users[who].id, frame["client_msg_id"])
                        seq = answer["data"]["seq"]
                        assert acked.setdefault(key, seq) == seq, (key, seq, acked[key])
                    else:
                        assert answer["code"] in ERROR_CODES, answer
                assert (await sock.request({"type": "ping"}))["type"] == "reply"
                for frame in sock.backlog:
                    if frame.get("type") == "error":
                        assert frame["code"] in ERROR_CODES, frame
        finally:
            for sock in socks:
                await sock.ws.close()
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, [r.getMessage() for r in errors]
        assert "Traceback" not in caplog.text

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(st.tuples(st.integers(0, 2), commands(cids)), min_size=1, max_size=12))
    def scenario(script: list[tuple[int, tuple[str, Any]]]) -> None:
        asyncio.run_coroutine_threadsafe(play(script), loop).result(60)

    await asyncio.to_thread(scenario)

    assert len(acked) >= 5  # the scripts did reach the send path (a sanity floor)
    # Every acknowledged message stored once, with the seq its reply gave; no duplicates.
    rows = await db.fetch("SELECT conversation_id, sender_id, client_msg_id, seq FROM messages")
    stored = {(r["conversation_id"], r["sender_id"], r["client_msg_id"]): r["seq"] for r in rows}
    assert len(stored) == len(rows)
    for key, seq in acked.items():
        assert stored.get(key) == seq, (key, seq)
    for cid in cids:
        seqs = sorted(r["seq"] for r in rows if r["conversation_id"] == cid)
        assert seqs == list(range(1, len(seqs) + 1))
    # Still healthy.
    assert (await client.get("/readyz")).status == 200
    sock: SocketClient = await connect(users[0], test_client=client)
    assert (await sock.request({"type": "join", "conversation_id": shared}))["type"] == "reply"
