"""One socket's protocol loop: frames are handled synchronously as each TCP read is parsed.

Per frame: one ``orjson.loads`` and a few integer updates; commands sent while handling a read
leave in one write (see ``wsconn``). Every ``message`` command carries its send time in the
body (``t=<monotonic ns> …``; CLOCK_MONOTONIC is system-wide on Linux, so any process of the run
can read it).

With ``--mix`` some commands are changes instead: ``react`` to a message the socket received
(an emoji it has not used on it yet, so every react makes an entry), ``edit`` or ``delete`` of
one of its own messages. A change takes a seq of the conversation like a message, so a
``change`` event advances a receipt exactly as a ``message`` event does.

With ``--reconnect`` a socket behaves as protocol/README.md §9 asks of a client: when it is
closed (or refused) it reconnects to the next node, joins each conversation with ``since`` = the
highest seq it holds, and resends every unanswered command with the same ``ref`` and
``client_msg_id``; a command refused with a retryable error is resent after a pause.
"""

from __future__ import annotations

import asyncio
import random
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
EMOJI = ("👍", "❤️", "😂", "🎉", "👀", "🙏", "🔥", "✅")
RECENT = 32  # messages remembered per conversation as targets of changes
# --reconnect: closes after which a client must not come back with the same token, errors after
# which it resends the same command later, and how long it keeps trying to reconnect.
FINAL_CLOSES = frozenset({4001, 4002})
RETRYABLE_ERRORS = frozenset({"internal", "unavailable", "rate_limited"})
RETRY_AFTER_S = 0.25
RECONNECT_GIVE_UP_S = 60.0


class JoinRefused(RuntimeError):
    """The socket could not be authenticated and joined; the message is a short reason."""


class SocketClient:
    """A joined connection of one user; sends ``message`` commands when its plan says so."""

    def __init__(
        self,
        plan: SocketPlan,
        run: RunState,
        tag: str,
        body_pad: str,
        urls: tuple[str, ...] = (),
        first_frame_auth: bool = False,
    ) -> None:
        self.plan = plan
        self.urls = urls  # --reconnect: where to go next, round-robin from the plan's node
        self.node = plan.node
        self.first_frame_auth = first_frame_auth
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
        self.down = False  # --reconnect: between a close and the rejoin
        self.frames: dict[int, bytes] = {}  # --reconnect: unanswered commands by ref, to resend
        # --mix: per conversation, own messages (edit/delete targets) and recently received
        # ones with the emoji this socket put on them (react targets).
        self.own: dict[int, list[int]] = {}
        self.seen: dict[int, dict[int, int]] = {}
        self.reacts: set[int] = set()  # refs of react commands not answered yet

    async def open(self, ws_url: str, first_frame_auth: bool) -> None:
        """Connect, authenticate, wait for ``hello``, join every planned conversation."""
        started = monotonic_ns()
        await self._join_all(ws_url, first_frame_auth)
        self.run.connect_us.append((monotonic_ns() - started) // 1000)

    async def _join_all(self, ws_url: str, first_frame_auth: bool) -> None:
        # After a reconnect, each join asks for what came after the receipt's last seq.
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
        for cid in self.plan.conversations:
            join: dict[str, Any] = {"type": "join", "ref": f"j{cid}", "conversation_id": cid}
            receipt = self.receipts.get(cid)
            if receipt is not None:
                join["since"] = receipt.last
            sock.send_text(dumps(join))
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
            if cid in self.receipts:  # a rejoin: the replay came before this reply
                if not frame["data"].get("resumed", True):
                    self.run.resume_failures += 1
            else:
                last = frame["data"]["last_seq"]
                self.receipts[cid] = Receipt(self.plan.index, cid, last, last)
            self._waiting.discard(cid)
            if not self._waiting:
                self._joined.set_result(None)
        else:
            self.on_frame(data)

    async def watch(self) -> None:
        """Wait for the socket to close; a close we did not ask for is recorded (and, with
        ``--reconnect``, followed by a reconnect)."""
        while True:
            assert self.sock is not None
            await self.sock.closed
            if self.closing:
                break
            code = self.sock.close_code or 1006
            self.run.close_codes[code] += 1
            now = monotonic_ns()
            if self.run.reconnect and code not in FINAL_CLOSES and now >= self.run.window_start:
                # A close the socket comes back from, in the window: the storm's start.
                self.run.closed_users.add(self.plan.user_id)
                self.run.first_close_ns = min(self.run.first_close_ns, now)
            if not self.run.reconnect or code in FINAL_CLOSES or not await self._reconnect():
                break
        self._lost()

    async def _reconnect(self) -> bool:
        """Rejoin through the next node that takes us, then resend what is unanswered."""
        run = self.run
        self.down = True
        started = monotonic_ns()
        give_up = started + int(RECONNECT_GIVE_UP_S * 1e9)
        attempt = 0
        while not self.closing:
            self.node += 1
            try:
                await self._join_all(self.urls[self.node % len(self.urls)], self.first_frame_auth)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, reset, timed out: the next node, after a pause
                if self.sock is not None:
                    self.sock.abort()
                run.reconnect_failures += 1
                status = getattr(getattr(exc, "response", None), "status_code", None)
                run.reconnect_errors[f"HTTP {status}" if status else str(exc)[:60]] += 1
                if monotonic_ns() > give_up:
                    return False
                attempt += 1
                await asyncio.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
                continue
            self.down = False
            rejoined = monotonic_ns()
            run.reconnect_us.append((rejoined - started) // 1000)
            run.last_rejoin_ns = max(run.last_rejoin_ns, rejoined)
            for frame in list(self.frames.values()):  # same ref, same client_msg_id
                run.resent += 1
                self._send_bytes(frame)
            return True
        return False

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
        if kind == "message" or kind == "change":
            if run.drop_next_delivery:  # --inject-loss: the checker never sees this one
                run.drop_next_delivery = False
                return
            now = monotonic_ns()
            cid = frame["conversation_id"]
            receipt = self.receipts.get(cid)
            if receipt is None:  # a conversation this socket did not join
                run.other_events += 1
                return
            seq = frame["seq"]
            if seq != receipt.last + 1:
                receipt.out_of_order(seq)
            if seq > receipt.last:
                receipt.last = seq
            receipt.count += 1
            if kind == "message":
                run.deliveries += 1
                receipt.id_sum += frame["id"]
                body: str = frame["body"]
                if body.startswith("t="):
                    sent = int(body[2 : body.index(" ")])
                    if run.window_start <= sent < run.window_end:
                        run.delivery_us.append((now - sent) // 1000)
                        if run.reconnect:
                            log = (
                                sent,
                                (now - sent) // 1000,
                                frame["sender_id"],
                                self.plan.user_id,
                            )
                            run.delivery_log.extend(log)
                if run.mix is not None:
                    self._remember(cid, seq)
            else:
                run.change_events += 1
                if frame["kind"] == "delete":
                    self.seen.get(cid, {}).pop(frame["target_seq"], None)
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
            if self.frames:
                self.frames.pop(frame["ref"], None)
            if self.reacts:
                self.reacts.discard(frame["ref"])
            reply = frame["data"]
            cid = reply["conversation_id"]
            if reply["duplicate"]:
                run.duplicates += 1
            replied = run.replied.get(cid)
            if replied is None:
                replied = run.replied[cid] = []
            if "target_seq" in reply:  # a change: its entry has a seq and no id
                if reply["seq"] is not None and not reply["duplicate"]:
                    run.replies += 1
                    run.changes += 1
                    replied += (reply["seq"], 0)
            else:
                run.replies += 1
                replied += (reply["seq"], reply["id"])
                if run.mix is not None and not reply["duplicate"]:
                    self.own.setdefault(cid, []).append(reply["seq"])
            if run.window_start <= sent < run.window_end:
                run.reply_us.append((monotonic_ns() - sent) // 1000)
            self._answered()
        elif kind == "error":
            ref = frame.get("ref")
            if ref in self.reacts and frame["message"] == "message was deleted":
                run.change_races += 1
            else:
                run.errors[frame["code"]] += 1
            if run.reconnect and ref in self.frames and frame["code"] in RETRYABLE_ERRORS:
                asyncio.get_running_loop().call_later(RETRY_AFTER_S, self._resend, ref)
                return  # still unanswered: the same command goes again
            self.reacts.discard(ref)
            if ref is not None and self.pending.pop(ref, None) is not None:
                self.frames.pop(ref, None)
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
        if run.mix is not None:
            change = self._change(cid, ref, now, random.random())
            if change is not None:
                self._send(change)
                return
        self._send(
            {
                "type": "message",
                "ref": ref,
                "conversation_id": cid,
                "client_msg_id": f"{self.tag}{ref}",
                "body": f"t={now} {self.pad}",
            }
        )

    def _remember(self, cid: int, seq: int) -> None:
        seen = self.seen.get(cid)
        if seen is None:
            seen = self.seen[cid] = {}
        seen[seq] = 0  # bit i: EMOJI[i] already used on it by this socket
        if len(seen) > RECENT:
            del seen[next(iter(seen))]

    def _change(self, cid: int, ref: int, now: int, draw: float) -> dict[str, Any] | None:
        """The change command this draw of the mix asks for, or None for a message (also when
        there is nothing to change yet)."""
        mix = self.run.mix
        assert mix is not None
        if draw < mix[0]:
            return None
        base = {"ref": ref, "conversation_id": cid, "client_change_id": f"{self.tag}c{ref}"}
        if draw < mix[1]:
            seen = self.seen.get(cid)
            for seq, used in (seen or {}).items():
                if used != (1 << len(EMOJI)) - 1:
                    bit = next(i for i in range(len(EMOJI)) if not used & (1 << i))
                    seen[seq] = used | (1 << bit)  # type: ignore[index]
                    self.reacts.add(ref)
                    return {"type": "react", "target_seq": seq, "emoji": EMOJI[bit], **base}
            return None
        own = self.own.get(cid)
        if not own:
            return None
        if draw < mix[2]:
            target = own[random.randrange(len(own))]
            return {"type": "edit", "target_seq": target, "body": f"e={now} edited", **base}
        target = own.pop(random.randrange(len(own)))
        return {"type": "delete", "target_seq": target, **base}

    def _send(self, frame: dict[str, Any]) -> None:
        payload = dumps(frame)
        if self.run.reconnect and "ref" in frame:
            self.frames[frame["ref"]] = payload  # kept until answered, resent after a reconnect
        self._send_bytes(payload)

    def _send_bytes(self, payload: bytes) -> None:
        if self.dead or self.down or self.sock is None:
            return
        self.run.frames_out += 1
        if not self.sock.send_text(payload):
            # watch() records the close, then reconnects or settles the pending sends
            if self.run.reconnect:
                self.down = True
            else:
                self.dead = True

    def _resend(self, ref: int) -> None:
        frame = self.frames.get(ref)
        if frame is not None and not self.closing:
            self.run.resent += 1
            self._send_bytes(frame)

    async def close(self) -> None:
        self.closing = True
        if self.sock is not None:
            await self.sock.close()
