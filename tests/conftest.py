"""Shared fixtures: a real PostgreSQL, a migrated database per test, the app, users and tokens.

By default one embedded PostgreSQL is started for the whole session (the same package the
server uses). ``TRUSTMESS_TEST_DATABASE_URL`` points the tests at another server instead (its
user must be allowed to create databases). Each test gets its own database cloned from a
migrated template, so tests never see each other's rows and may run in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import ClientResponse, WSMsgType, web
from aiohttp.test_utils import TestClient

from tests.mailserver import MailServer
from tests.openapi_contract import ContractClient, shared_contract
from trustmess.app import create_app
from trustmess.auth import USERNAME_PATTERN, _hash_password_sync, issue_access_token
from trustmess.cluster.supervisor import die_with_parent, free_port
from trustmess.runtime.embedded import EmbeddedPostgres
from trustmess.runtime.migrate import upgrade
from trustmess.settings import Settings

JWT_SECRET = "test-secret-" + "x" * 40
TEST_PASSWORD = "correct horse battery"


def with_database(dsn: str, name: str) -> str:
    """The same server URL with another database name."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@dataclass(frozen=True)
class TestDatabaseServer:
    admin_dsn: str
    template: str


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestDatabaseServer]:
    """One PostgreSQL server for the session and a migrated template database on it."""
    external = os.environ.get("TRUSTMESS_TEST_DATABASE_URL")
    embedded: EmbeddedPostgres | None = None
    workdir: str | None = None
    if external:
        admin_dsn = external
    else:
        # Not under a private folder: the embedded server runs as an unprivileged user.
        workdir = tempfile.mkdtemp(prefix="trustmess-test-", dir="/tmp")
        embedded = EmbeddedPostgres(Path(workdir) / "pg")
        admin_dsn = embedded.start()
        # Test data is disposable: trade durability for speed.
        asyncio.run(
            _admin(
                admin_dsn,
                "ALTER SYSTEM SET fsync = off",
                "ALTER SYSTEM SET synchronous_commit = off",
                "ALTER SYSTEM SET full_page_writes = off",
                "SELECT pg_reload_conf()",
            )
        )
    template = f"tm_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{template}"'))
    try:
        upgrade(with_database(admin_dsn, template))
        yield TestDatabaseServer(admin_dsn, template)
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
        if embedded is not None:
            embedded.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def scratch_database(
    server: TestDatabaseServer, prefix: str, template: str | None = None
) -> AsyncIterator[str]:
    """A database of its own (a copy of ``template``, else empty), dropped afterwards; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy_of = "" if template is None else f' TEMPLATE "{template}"'
    await _admin(server.admin_dsn, f'CREATE DATABASE "{name}"{copy_of}')
    try:
        yield with_database(server.admin_dsn, name)
    finally:
        await _admin(server.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(pg_server: TestDatabaseServer) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    async with scratch_database(pg_server, "tm", pg_server.template) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test database, for checking what the server stored."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for an in-test server: cheap bcrypt, generous auth limits, short timers."""
    return Settings(
        database_url=database_url,
        jwt_secret=JWT_SECRET,
        data_dir=tmp_path,
        bcrypt_rounds=4,
        auth_burst=1000,
        bcrypt_per_address=1000,
        bcrypt_queue_max=1000,
        pool_min=1,
        pool_max=10,
    )


@pytest.fixture
def aiohttp_client_cls() -> type[TestClient[web.Request, web.Application]]:
    """Every test client checks each response of a documented operation against
    protocol/openapi.yaml (status, JSON schema, required headers): tests/openapi_contract.py."""
    return ContractClient


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if shared_contract.cache_info().currsize == 0:
        return  # no test made an HTTP request
    checked = shared_contract().checked
    total = checked.total()
    terminalreporter.write_line(
        f"openapi: {total} response{'' if total == 1 else 's'} checked against "
        "protocol/openapi.yaml"
    )
    if config.option.verbose > 0:
        for test_file, count in sorted(checked.items()):
            terminalreporter.write_line(f"  {test_file}: {count}")
        unseen = shared_contract().unseen()
        terminalreporter.write_line(f"openapi: {len(unseen)} documented statuses no test saw:")
        for method, path, status in unseen:
            terminalreporter.write_line(f"  {method} {path} {status}")


AppFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def make_client(
    settings: Settings,
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> AppFactory:
    """Start the real app on a loopback port, optionally with some settings changed."""

    async def factory(**changes: object) -> TestClient[web.Request, web.Application]:
        return await aiohttp_client(create_app(settings.replace(**changes)))

    return factory


@pytest.fixture
async def client(make_client: AppFactory) -> TestClient[web.Request, web.Application]:
    """A client for the app with the default test settings."""
    return await make_client()


@dataclass(frozen=True)
class User:
    id: int
    username: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


UserFactory = Callable[..., Awaitable[User]]


@pytest.fixture
def make_user(db: asyncpg.Connection, settings: Settings) -> UserFactory:
    """Create a user straight in the database and mint an access token for it."""
    counter = iter(range(1, 1_000_000))

    async def factory(
        username: str | None = None, *, is_admin: bool = False, password: str = TEST_PASSWORD
    ) -> User:
        name = username or f"user{next(counter)}_{uuid.uuid4().hex[:4]}"
        # Only names signup would take: the server never answers with any other username.
        assert USERNAME_PATTERN.fullmatch(name) and name == name.lower(), name
        password_hash = _hash_password_sync(password, 4)
        user_id = await db.fetchval(
            "INSERT INTO users (username, password_hash, display_name, is_admin) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            password_hash,
            name.title(),
            is_admin,
        )
        # A session as a login makes it, so that ending it (or all) revokes this token.
        session_id = uuid.uuid4().hex
        await db.execute(
            "INSERT INTO sessions (id, user_id, expires_at) "
            "VALUES ($1, $2, now() + interval '1 day')",
            session_id,
            user_id,
        )
        token, _ = issue_access_token(
            JWT_SECRET, user_id, settings.access_token_ttl_s, session_id=session_id
        )
        return User(user_id, name, password, token)

    return factory


def message_frame(
    cid: int, cmid: str, body: str | None = None, **extra: object
) -> dict[str, object]:
    """A ``message`` command; the body defaults to ``"body of <cmid>"``."""
    return {
        "type": "message",
        "conversation_id": cid,
        "client_msg_id": cmid,
        "body": f"body of {cmid}" if body is None else body,
        **extra,
    }


class SocketClient:
    """A protocol client over a real WebSocket (aiohttp's client) for tests.

    ``recv`` waits (with a timeout) for the next frame; ``recv_type`` skips frames of other
    types, keeping them for later calls; ``request`` sends a command with a ref and returns its
    reply or error frame.
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.backlog: list[dict[str, Any]] = []
        self._refs = iter(range(1, 1_000_000))

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(orjson.dumps(frame).decode())

    async def _next(self, timeout: float) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != WSMsgType.TEXT:
            raise ConnectionClosed(self.ws.close_code, msg)
        frame: dict[str, Any] = orjson.loads(msg.data)
        return frame

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return await self._next(timeout)

    async def recv_where(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        for index, frame in enumerate(self.backlog):
            if predicate(frame):
                return self.backlog.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._next(timeout)
                if predicate(frame):
                    return frame
                self.backlog.append(frame)

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        return await self.recv_where(lambda f: f.get("type") == kind, timeout)

    async def request(self, frame: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        ref = f"r{next(self._refs)}"
        await self.send({**frame, "ref": ref})
        return await self.recv_where(
            lambda f: f.get("ref") == ref and f.get("type") in ("reply", "error"), timeout
        )

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close the socket; return the close code."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type == WSMsgType.CLOSE:
                    # The code the server sent: ws.close_code becomes 1006 when the server
                    # drops the TCP connection before aiohttp's automatic close reply is out.
                    sent: int = msg.data
                    return sent
                if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING):
                    code: int | None = self.ws.close_code
                    return code
                if msg.type == WSMsgType.TEXT:
                    self.backlog.append(orjson.loads(msg.data))


class ConnectionClosed(Exception):
    def __init__(self, code: int | None, msg: Any) -> None:
        super().__init__(f"socket closed (code {code}): {msg}")
        self.code = code


SocketFactory = Callable[..., Awaitable[SocketClient]]


@pytest.fixture
def connect(client: TestClient[web.Request, web.Application]) -> SocketFactory:
    """Open an authenticated socket for a user (header auth) and consume its hello."""

    async def factory(user: User, *, test_client: Any = None, hello: bool = True) -> SocketClient:
        target = test_client or client
        ws = await target.ws_connect("/ws", headers=user.headers, autoping=True)
        sock = SocketClient(ws)
        if hello:
            frame = await sock.recv()
            assert frame["type"] == "hello", frame
        return sock

    return factory


GroupFactory = Callable[..., Awaitable[int]]


@pytest.fixture
def make_group(db: asyncpg.Connection) -> GroupFactory:
    """Create a group conversation straight in the database; the first user owns it."""

    async def factory(*users: User, title: str | None = None) -> int:
        cid: int = await db.fetchval(
            "INSERT INTO conversations (kind, title, created_by) VALUES ('group', $1, $2) "
            "RETURNING id",
            title,
            users[0].id,
        )
        await db.executemany(
            "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, $3)",
            [(cid, u.id, "owner" if i == 0 else "member") for i, u in enumerate(users)],
        )
        return cid

    return factory


@pytest.fixture
async def chat(make_user: UserFactory, make_group: GroupFactory) -> tuple[User, User, int]:
    """Alice and Bob in a group conversation that Alice owns: ``alice, bob, cid = chat``."""
    alice, bob = await make_user(), await make_user()
    return alice, bob, await make_group(alice, bob)


MessageInserter = Callable[[int, int, int], Awaitable[None]]


@pytest.fixture
def insert_messages(db: asyncpg.Connection) -> MessageInserter:
    """Append messages straight in SQL, as the writer would (gapless seqs, ``last_seq`` bumped);
    read markers are left where they are."""

    async def insert(conversation_id: int, sender_id: int, n: int) -> None:
        await db.execute(
            """
            WITH bumped AS (
                UPDATE conversations SET last_seq = last_seq + $3, last_message_at = now()
                WHERE id = $1 RETURNING last_seq - $3 AS base
            )
            INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, body)
            SELECT $1, base + g, $2, 'sql-' || (base + g), 'message ' || (base + g)
            FROM bumped, generate_series(1, $3) AS g
            """,
            conversation_id,
            sender_id,
            n,
        )

    return insert


async def login(
    client: TestClient[web.Request, web.Application], username: str, password: str = TEST_PASSWORD
) -> ClientResponse:
    """``POST /auth/login``; the response, whatever its status."""
    return await client.post("/auth/login", json={"username": username, "password": password})


@dataclass(frozen=True)
class Answer:
    """A response read to the end: status, headers and JSON body."""

    status: int
    headers: dict[str, str]
    body: Any


async def post_from(
    client: TestClient[web.Request, web.Application],
    address: str,
    path: str,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Answer:
    """POST ``payload`` to the test server from a socket bound to ``address``: any of
    127.0.0.0/8 reaches a server on 127.0.0.1, so each is a distinct client address. The
    response is checked against protocol/openapi.yaml like the test client's."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(client.make_url(path), json=payload, headers=headers) as resp,
    ):
        raw = await resp.read()
        shared_contract().check("POST", path, resp.status, resp.headers, raw)
        body = orjson.loads(raw) if resp.content_type == "application/json" else None
        return Answer(resp.status, dict(resp.headers), body)


async def login_from(
    client: TestClient[web.Request, web.Application],
    address: str,
    username: str,
    password: str = TEST_PASSWORD,
) -> Answer:
    """``POST /auth/login`` from ``address`` (see post_from)."""
    return await post_from(
        client, address, "/auth/login", {"username": username, "password": password}
    )


async def create_conversation(
    client: TestClient[web.Request, web.Application],
    user: User,
    member_ids: list[int],
    title: str | None = None,
    *,
    status: int = 201,
) -> dict[str, Any]:
    """``POST /conversations`` as ``user``; the body of an answer that must have ``status``.

    One other member and no title make the direct conversation; pass a title for a group.
    """
    payload: dict[str, Any] = {"member_ids": member_ids}
    if title is not None:
        payload["title"] = title
    resp = await client.post("/conversations", json=payload, headers=user.headers)
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    return body


T = TypeVar("T")


async def eventually(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 15.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` (every 20 ms) until it returns something true, and return that; fail
    after ``timeout`` seconds.

    For conditions nothing notifies us about, such as another process exiting or a row written
    behind. ``predicate`` may be a coroutine function; its awaits count against ``timeout``.
    """
    limit = asyncio.timeout(timeout)
    try:
        async with limit:
            while True:
                result = predicate()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return result
                await asyncio.sleep(0.02)
    except TimeoutError:
        if not limit.expired():
            raise  # the predicate's own timeout, not ours
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


async def error_of(resp: ClientResponse, status: int) -> dict[str, Any]:
    """The ``error`` object of a response that must have ``status``."""
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    return error


class RedisProcess:
    """A throwaway ``redis-server`` on a loopback port, for cluster tests.

    ``stop()`` and ``start()`` may be called mid-test (an outage); the port stays the same.
    Nothing is persisted, so a restarted server starts empty, as after a real crash. Call
    ``start()`` from the main thread: the server is told to die with the thread that started it
    (so a killed pytest leaves no redis-server behind), and executor threads come and go.
    """

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Dies with this pytest process even if pytest itself is killed.
            preexec_fn=die_with_parent(),
        )
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisProcess | None]:
    """The session's own ``redis-server`` (None when ``TRUSTMESS_TEST_REDIS_URL`` names one)."""
    if os.environ.get("TRUSTMESS_TEST_REDIS_URL"):
        yield None
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary and no TRUSTMESS_TEST_REDIS_URL")
    workdir = Path(tempfile.mkdtemp(prefix="trustmess-redis-", dir="/tmp"))
    redis = RedisProcess(binary, free_port("127.0.0.1"), workdir)
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_process: RedisProcess | None) -> str:
    """A Redis for the broker: ``TRUSTMESS_TEST_REDIS_URL``, else the session's own server."""
    if redis_process is None:
        return os.environ["TRUSTMESS_TEST_REDIS_URL"]
    return redis_process.url


@pytest.fixture
async def mail_server() -> AsyncIterator[MailServer]:
    """A real SMTP server on loopback (tests/mailserver.py) for the duration of the test."""
    server = MailServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
