"""The checker: did every replied message reach every joined socket exactly once, in order?

Ground truth per conversation is its stored history (HTTP pages) when fetched, else the replies.
Every conversation of a run is created by that run, so its history must be exactly the messages
the run sent: gapless from seq 1, each replied (seq, id) stored, nothing stored unreplied. Each
socket must then have received ``join_last + 1 … last`` once and in order; the sum of the ids it
received must equal that range's sum in the truth (a cheap content check).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from trustmess.loadtest.worker import WorkerResult

MAX_EXAMPLES = 20


@dataclass(slots=True)
class Verification:
    checked: dict[str, int] = field(default_factory=dict)
    violations: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, kind: str, detail: str, count: int = 1) -> None:
        self.violations[kind] += count
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{kind}: {detail}")

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "violations": dict(self.violations),
            "examples": self.examples,
        }


def _replies(results: Sequence[WorkerResult], check: Verification) -> dict[int, dict[int, int]]:
    """conversation → seq → id, from every process's replies; a seq replied twice is flagged."""
    replied: dict[int, dict[int, int]] = {}
    for result in results:
        for cid, flat in result.replied.items():
            seqs = replied.setdefault(cid, {})
            for seq, message_id in zip(flat[0::2], flat[1::2], strict=True):
                if seq in seqs:
                    check.add("duplicate reply", f"conversation {cid}: seq {seq} replied twice")
                seqs[seq] = message_id
    return replied


def _truth(
    cid: int, replied: dict[int, int], stored: list[tuple[int, int]] | None, check: Verification
) -> list[int]:
    """Prefix sums of message ids by seq (index 0 is 0) for the conversation's true history."""
    rows = dict(stored) if stored is not None else replied
    if stored is not None:
        missing = [seq for seq, mid in replied.items() if rows.get(seq) != mid]
        if missing:
            check.add(
                "reply without stored row", f"conversation {cid}: seqs {missing[:5]}", len(missing)
            )
        unreplied = len(rows.keys() - replied.keys())
        if unreplied:
            check.add("stored row never replied", f"conversation {cid}: {unreplied}", unreplied)
    last = max(rows, default=0)
    if len(rows) != last:
        check.add("seq gap", f"conversation {cid}: {len(rows)} messages up to seq {last}")
    prefix = [0] * (last + 1)
    for seq in range(1, last + 1):
        prefix[seq] = prefix[seq - 1] + rows.get(seq, 0)
    return prefix


def verify(
    conversations: Sequence[int],
    results: Sequence[WorkerResult],
    history: dict[int, list[tuple[int, int]]] | None,
    closes_expected: bool = False,
) -> Verification:
    """Check the run; ``history`` maps each conversation to its stored (seq, id) rows.

    ``closes_expected`` (``--reconnect``, under injected faults): sockets the server closed are
    reported, not violations; what must still hold is that every socket, across its
    reconnects, got every message exactly once and in order.
    """
    check = Verification()
    replied = _replies(results, check)
    truth = {
        cid: _truth(cid, replied.get(cid, {}), None if history is None else history[cid], check)
        for cid in conversations
    }
    receipts = 0
    for result in results:
        for receipt in result.receipts:
            receipts += 1
            prefix = truth[receipt.conversation_id]
            last = len(prefix) - 1
            where = f"socket {receipt.socket}, conversation {receipt.conversation_id}"
            if receipt.bad:
                check.add("out of order", f"{where}: {'; '.join(receipt.problems)}", receipt.bad)
            expected = last - receipt.join_last
            if receipt.count != expected or receipt.last != last:
                check.add("missing deliveries", f"{where}: got {receipt.count} of {expected}")
            elif receipt.id_sum != prefix[last] - prefix[receipt.join_last]:
                check.add("wrong message", f"{where}: delivered ids differ from the stored ones")
    unanswered = sum(result.totals["unanswered"] for result in results)
    if unanswered:
        check.add("no reply", f"{unanswered} message commands never answered", unanswered)
    for result in results:
        for code, count in result.close_codes.items():
            if not closes_expected:
                check.add("closed by server", f"{count} sockets closed with {code}", count)
        for reason, count in result.connect_errors.items():
            check.add("connect failed", f"{count} sockets: {reason}", count)
    check.checked = {
        "conversations": len(conversations),
        "receipts": receipts,
        "replies": sum(len(seqs) for seqs in replied.values()),
        "stored_rows": sum(len(p) - 1 for p in truth.values()),
        "history_checked": history is not None,
    }
    return check
