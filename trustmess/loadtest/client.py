"""One socket's protocol loop: frames are handled synchronously as each TCP read is parsed.

Per frame: one ``orjson.loads`` and a few integer updates; commands sent while handling a read
leave in one write (see ``wsconn``). Every ``message`` command carries its send time in the
body (``t=<monotonic ns> …``; CLOCK_MONOTONIC is system-wide on Linux, so any process of the run
can read it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from trustmess.loadtest.config import SocketPlan
from trustmess.loadtest.runstate import NEVER, Receipt, RunState
from trustmess.loadtest.wsconn import Data, FrameSocket

loads = orjson.loads
dumps = orjson.dumps
monotonic_ns = time.monotonic_ns
SETUP_TIMEOUT_S = 60.0


class JoinRefused(RuntimeError):
    """The socket could not be authenticated and joined; the message is a short reason."""


class SocketClient:
    """A joined connection of one user; sends ``message`` commands when its plan says so."""

    def __init__(self, plan: SocketPlan, run: RunState, tag: str, body_pad: str) -> None:
        self.plan = plan
        self.run = run
        self.tag = tag
        self.pad = body_pad
        self.sock: FrameSocket | None = None
        self.receipts: dict[int, Receipt] = {}
        self.pending: dict[int, int] = {}
        self.next_ref = 0
        self.turn = 0
        self.typing_credit = 0.0
        self.closing = False
        self.dead = False

    async def open(self, ws_url: str, first_frame_auth: bool) -> None:
        """Connect, authenticate, wait for ``hello``, join every planned conversation."""
        started = monotonic_ns()
        loop = asyncio.get_running_loop()
        self._hello: asyncio.Future[None] = loop.create_future()
        self._joined: asyncio.Future[None] = loop.create_future()
        self._waiting = set(self.plan.conversations)
        token = self.plan.token
        headers = {} if first_frame_auth else {"Authorization": f"Bearer {token}"}
        self.sock = sock = await FrameSocket.connect(ws_url, headers, self._on_setup_frame)
        if first_frame_auth:
            sock.send_text(dumps({"type": "auth", "ref": "a", "token": token}))
        await self._until(self._hello)
        self.run.connect_us.append((monotonic_ns() - started) // 1000)
        for cid in self.plan.conversations:
            sock.send_text(dumps({"type": "join", "ref": f"j{cid}", "conversation_id": cid}))
        if self._waiting:
            await self._until(self._joined)
        sock.on_text = self.on_frame

    async def _until(self, step: asyncio.Future[None]) -> None:
        assert self.sock is not None
        done, _ = await asyncio.wait(
            (step, self.sock.closed), timeout=SETUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if step not in done:
            code = self.sock.close_code
            raise JoinRefused(f"closed with {code} during set-up" if code else "set-up timed out")
        step.result()

    def _on_setup_frame(self, data: Data) -> None:
        frame = loads(data)
        ref = frame.get("ref")
        if frame["type"] == "hello":
            self._hello.set_result(None)
        elif isinstance(ref, str) and ref.startswith("j"):
            cid = int(ref[1:])
            if frame["type"] != "reply":
                self._joined.set_exception(JoinRefused(f"join refused: {frame.get('code')}"))
                return
            last = frame["data"]["last_seq"]
            self.receipts[cid] = Receipt(self.plan.index, cid, last, last)
            self._waiting.discard(cid)
            if not self._waiting:
                self._joined.set_result(None)
        else:
            self.on_frame(data)

    async def watch(self) -> None:
        """Wait for the socket to close; a close we did not ask for is recorded."""
        assert self.sock is not None
        await self.sock.closed
        if not self.closing:
            self.run.close_codes[self.sock.close_code or 1006] += 1
        self._lost()

    def _lost(self) -> None:
        """The socket is gone: its unanswered sends and unfinished receipts will not complete."""
        self.dead = True
        run = self.run
        if self.pending:
            run.unanswered += len(self.pending)
            missing = len(self.pending)
            self.pending.clear()
            run.answered(missing)
        for receipt in self.receipts.values():
            if receipt.target != NEVER:
                receipt.target = NEVER
                run.receipt_reached()

    def on_frame(self, data: Data) -> None:
        run = self.run
        run.frames_in += 1
        frame: dict[str, Any] = loads(data)
        kind = frame["type"]
        if kind == "message":
            if run.drop_next_delivery:  # --inject-loss: the checker never sees this one
                run.drop_next_delivery = False
                return
            now = monotonic_ns()
            run.deliveries += 1
            receipt = self.receipts.get(frame["conversation_id"])
            if receipt is None:  # a conversation this socket did not join
                run.other_events += 1
                return
            seq = frame["seq"]
            if seq != receipt.last + 1:
                receipt.out_of_order(seq)
            if seq > receipt.last:
                receipt.last = seq
            receipt.count += 1
            receipt.id_sum += frame["id"]
            body: str = frame["body"]
            if body.startswith("t="):
                sent = int(body[2 : body.index(" ")])
                if run.window_start <= sent < run.window_end:
                    run.delivery_us.append((now - sent) // 1000)
            if seq >= receipt.target:
                receipt.target = NEVER
                run.receipt_reached()
            if run.ack_every and receipt.count % run.ack_every == 0:
                self._send({"type": "ack", "conversation_id": frame["conversation_id"], "seq": seq})
                run.acks_sent += 1
        elif kind == "reply":
            sent = self.pending.pop(frame["ref"], -1)
            if sent < 0:
                return
            reply = frame["data"]
            run.replies += 1
            if reply["duplicate"]:
                run.duplicates += 1
            cid = reply["conversation_id"]
            replied = run.replied.get(cid)
            if replied is None:
                replied = run.replied[cid] = []
            replied += (reply["seq"], reply["id"])
            if run.window_start <= sent < run.window_end:
                run.reply_us.append((monotonic_ns() - sent) // 1000)
            self._answered()
        elif kind == "error":
            run.errors[frame["code"]] += 1
            ref = frame.get("ref")
            if ref is not None and self.pending.pop(ref, None) is not None:
                self._answered()
        elif kind == "typing":
            run.typing_events += 1
        elif kind == "read":
            run.read_events += 1
        else:
            run.other_events += 1

    def _answered(self) -> None:
        run = self.run
        run.answered()
        if run.sending and run.closed_loop and not self.dead:
            self.send_message()

    def send_message(self) -> None:
        """One ``message`` command (preceded by its share of ``typing`` commands)."""
        run = self.run
        if self.dead:
            return
        convs = self.plan.conversations
        cid = convs[self.turn % len(convs)]
        self.turn += 1
        if run.typing_per_message:
            self.typing_credit += run.typing_per_message
            while self.typing_credit >= 1:
                self.typing_credit -= 1
                run.typing_sent += 1
                self._send({"type": "typing", "conversation_id": cid})
        self.next_ref = ref = self.next_ref + 1
        now = monotonic_ns()
        self.pending[ref] = now
        run.outstanding += 1
        run.sent += 1
        self._send(
            {
                "type": "message",
                "ref": ref,
                "conversation_id": cid,
                "client_msg_id": f"{self.tag}{ref}",
                "body": f"t={now} {self.pad}",
            }
        )

    def _send(self, frame: dict[str, Any]) -> None:
        if self.dead or self.sock is None:
            return
        self.run.frames_out += 1
        if not self.sock.send_text(dumps(frame)):
            self.dead = True  # watch() records the close and settles the pending sends

    async def close(self) -> None:
        self.closing = True
        if self.sock is not None:
            await self.sock.close()
