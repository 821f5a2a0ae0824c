"""What the node reads from Redis: a malformed bus message is a logged, counted drop (the
listener keeps its connection, /readyz stays up), and the bus works with Redis AUTH/ACL."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from tests.conftest import die_with_parent, eventually, free_port, message_frame
from tests.test_broker_outbox import redis_user
from trustmess.appkeys import HUB
from trustmess.cluster.redis_broker import RedisBroker, channel_prefix


def header(seq: object = None, skip_user: object = None) -> bytes:
    return orjson.dumps(["some-other-node", time.time(), seq, skip_user])


@pytest.fixture
async def on_bus(redis_url, make_client, make_user, make_group, connect) -> Any:
    """Alice's socket on a node with the Redis bus, joined to a group with Bob:
    ``client, alice, cid, sock, broker``."""
    client = await make_client(broker=redis_url)
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    sock = await connect(alice, test_client=client)
    await sock.request({"type": "join", "conversation_id": cid})
    broker = client.app[HUB].broker
    assert isinstance(broker, RedisBroker)
    return client, alice, cid, sock, broker


async def test_malformed_bus_messages_are_dropped_counted_and_the_bus_stays_up(
    redis_url, on_bus, caplog
) -> None:
    caplog.set_level(logging.INFO, "trustmess.cluster.redis_broker")
    client, alice, cid, sock, broker = on_bus
    prefix = channel_prefix(redis_url)
    conv, user, ctl = f"{prefix}c:{cid}", f"{prefix}u:{alice.id}", f"{prefix}ctl"
    event = b'{"type":"read","conversation_id":%d,"user_id":1,"seq":1}' % cid
    bad = [
        (conv, b"no header line"),
        (conv, b"not json\n" + event),
        (conv, b'{"node":1}\n' + event),
        (conv, b'["n", 1]\n' + event),
        (conv, header(seq="3") + b"\n" + event),
        (conv, header(seq=True) + b"\n" + event),
        (conv, header(seq=-1) + b"\n" + event),
        (conv, header(skip_user=[1]) + b"\n" + event),
        (conv, orjson.dumps([5, time.time(), None, None]) + b"\n" + event),
        (conv, orjson.dumps(["n", "yesterday", None, None]) + b"\n" + event),
        (conv, b"\xff\xfe\n" + event),
        (user, b"[]\n" + event),
        (ctl, header() + b"\nnot json"),
        (ctl, header() + b"\n[1, 2]"),
        (ctl, header() + b'\n{"op": "member_removed"}'),
        (ctl, header() + b'\n{"op": "kick", "sessions": 5}'),
    ]
    admin = aioredis.Redis.from_url(redis_url)
    try:
        for channel, data in bad:
            assert await admin.publish(channel, data) == 1
        # A well-formed event from another node after them still arrives.
        await admin.publish(conv, header() + b"\n" + event)
    finally:
        await admin.aclose()
    got = await sock.recv_type("read")
    assert got == orjson.loads(event)
    await eventually(lambda: broker.bus_malformed == len(bad), 5, "every bad one counted")
    # Connected once, in the fixture: no reconnect since.
    assert "redis connection lost" not in caplog.text
    assert "redis connected" not in caplog.text
    # One log line for the lot (rate-limited), and the metric.
    assert caplog.text.count("dropped a malformed bus message") == 1
    metrics = await (await client.get("/metrics")).text()
    assert f"trustmess_broker_malformed_total {len(bad)}" in metrics
    assert (await client.get("/readyz")).status == 200
    # The node still sends and delivers.
    await sock.request(message_frame(cid, "after", "still here"))
    assert (await sock.recv_type("message"))["body"] == "still here"


async def test_a_node_drops_its_own_echo_and_delivers_the_others(redis_url, on_bus) -> None:
    """Redis sends a publisher its own messages back: they are dropped (the node delivered
    them when it published), neither delivered twice nor counted."""
    _, _, cid, sock, broker = on_bus
    conv = f"{channel_prefix(redis_url)}c:{cid}"
    mine = b'{"type":"read","conversation_id":%d,"user_id":1,"seq":1}' % cid
    theirs = b'{"type":"read","conversation_id":%d,"user_id":1,"seq":2}' % cid
    own = orjson.dumps([broker.node, time.time(), None, None])
    received, malformed = broker.bus_received, broker.bus_malformed
    admin = aioredis.Redis.from_url(redis_url)
    try:
        assert await admin.publish(conv, own + b"\n" + mine) == 1
        assert await admin.publish(conv, header() + b"\n" + theirs) == 1
    finally:
        await admin.aclose()
    # In order on one connection: had the echo been delivered, it would come first.
    assert await sock.recv_type("read") == orjson.loads(theirs)
    assert broker.bus_received == received + 1
    assert broker.bus_malformed == malformed


async def test_the_bus_works_with_a_redis_acl_user_and_password(
    redis_process, redis_url, make_client, make_user, make_group, connect, caplog
) -> None:
    if redis_process is None:
        pytest.skip("creates a Redis ACL user: needs the tests' own redis-server")
    async with redis_user(redis_url) as (url, admin):
        # A user of its own with a password (AUTH username password on connect).
        user = url.split("//", 1)[1].split(":", 1)[0]
        await admin.execute_command(
            "ACL", "SETUSER", user, "reset", "on", ">pw", "~*", "&*", "+@all"
        )
        client = await make_client(broker=url)
        assert (await client.get("/readyz")).status == 200
        alice, bob = await make_user(), await make_user()
        cid = await make_group(alice, bob)
        a, b = await connect(alice, test_client=client), await connect(bob, test_client=client)
        await b.request({"type": "join", "conversation_id": cid})
        await a.request(message_frame(cid, "acl", "over an ACL user"))
        assert (await b.recv_type("message"))["body"] == "over an ACL user"
        assert "pw@" not in caplog.text

        wrong = url.replace(":pw@", ":wrong@")
        refused = await make_client(broker=wrong)
        resp = await refused.get("/readyz")
        assert resp.status == 503
        assert "wrong" not in caplog.text


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, with a self-signed certificate for 127.0.0.1: (port,
    the certificate to trust)."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port("127.0.0.1")
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("redis-server with TLS did not start (built without TLS?)")
            time.sleep(0.05)
        yield port, cert
    finally:
        process.terminate()
        process.wait(10)


async def test_the_bus_works_over_tls(tls_redis, make_client, caplog) -> None:
    port, cert = tls_redis
    client = await make_client(broker=f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}")
    assert (await client.get("/readyz")).status == 200
    broker = client.app[HUB].broker
    assert isinstance(broker, RedisBroker)
    client.app[HUB].publish_user(1, b'{"type":"ping"}')
    await eventually(lambda: broker.bus_published >= 1, 5, "a publish over TLS")
    # Without trusting the certificate the bus does not come up.
    untrusted = await make_client(broker=f"rediss://127.0.0.1:{port}/0")
    assert (await untrusted.get("/readyz")).status == 503
