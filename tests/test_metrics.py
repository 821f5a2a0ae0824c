"""``GET /metrics``: Prometheus text with live connection, message and error counts."""

from __future__ import annotations

from tests.conftest import message_frame


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


async def test_metrics_follow_the_traffic(client, connect, chat) -> None:
    alice, _, cid = chat
    a = await connect(alice)
    await a.request({"type": "join", "conversation_id": cid})
    reply = await a.request(message_frame(cid, "m", "x"))
    assert reply["type"] == "reply"
    await a.request({"type": "teleport"})
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    assert value(text, "trustmess_connections") == 1
    assert value(text, "trustmess_subscriptions") == 1
    assert value(text, "trustmess_messages_persisted_total") == 1
    assert value(text, "trustmess_deliveries_total") == 1
    assert 'trustmess_errors_total{code="unknown_type"} 1' in text
    assert value(text, "process_resident_memory_bytes") > 1_000_000
