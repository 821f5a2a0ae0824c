"""The live socket: one connection at a time, reconnected by close code, resumed without a gap.

* Commands wait in the :class:`~.outbox.Outbox` and are written by one writer per connection;
  refusals (``rate_limited``, ``internal``, ``unavailable``) are resent after a pause.
* On a close (§7) the session backs off with full jitter and reconnects; the new connection
  first re-joins every joined conversation with ``since`` = the last seq handed to the
  application, then resends every unanswered message, change and ack with the same
  ``client_msg_id``/``client_change_id`` (§8, §9), so each is stored once and each ``send``
  returns once.
* Before the access token expires, a fresh one is sent with ``auth`` (§1.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from trustmess.client.errors import (
    ClientStopped,
    CommandError,
    NotLoggedIn,
    SessionExpired,
    TrustMessError,
)
from trustmess.client.events import Event, Presence, Reconnected, Removed, parse_event
from trustmess.client.http import HttpApi
from trustmess.client.models import Change, Entry, JoinResult, Json, Message
from trustmess.client.outbox import Command, Outbox
from trustmess.client.reconnect import CloseAction, ReconnectPolicy, close_action
from trustmess.client.stream import FILL_PAGE, ConversationStream
from trustmess.client.tokens import RefreshNotSent

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
MAX_INCOMING_BYTES = 16 << 20  # a conversation event of a big group is large


class Stop:
    """The end marker of the event queue."""

    def __init__(self, error: TrustMessError | None) -> None:
        self.error = error


class LiveSession:
    """The reconnecting socket of one logged-in client, and the events it delivers."""

    def __init__(self, ws_url: str, http: HttpApi, policy: ReconnectPolicy) -> None:
        self._ws_url = ws_url
        self._http = http
        self._tokens = http.tokens
        self._policy = policy
        self.events: asyncio.Queue[Event | Stop] = asyncio.Queue()
        self.streams: dict[int, ConversationStream] = {}
        self._outbox = Outbox()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self.stopped: TrustMessError | None = None
        # After a 4009 the next joins ask for no replay: a replay bigger than the server's
        # outbound queue would be closed with 4009 again however fast we read; the gap is
        # paged over HTTP instead (the `resumed: false` path).
        self._replay = True
        self.connections = 0  # connections opened so far (diagnostics, tests)
        self.close_codes: list[int | None] = []
        # Presence is subscribed per socket: after a reconnect the subscription is renewed and
        # its snapshot handed over as Presence events (what changed meanwhile).
        self.presence_wanted = False
        self._resubscribing: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (again, after a stop: reconnect on the user's action)."""
        if self._task is not None and not self._task.done():
            return
        self.stopped = None
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        """Close the socket for good; unanswered commands fail with :class:`ClientStopped`."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()
        if self.stopped is None:
            self._finish(None)

    def _finish(self, error: TrustMessError | None) -> None:
        """The session stopped: fail what waits, end the event stream."""
        self.stopped = error or ClientStopped("the client was closed")
        self.connected.clear()
        for stream in self.streams.values():
            stream.on_join_error(self.stopped)  # kept: a later connect() resumes them
        self._outbox.fail_all(self.stopped)
        self.events.put_nowait(Stop(error))

    # --- commands ----------------------------------------------------------------------

    async def command(
        self,
        frame: dict[str, Any],
        *,
        durable: bool,
        on_reply: Callable[[Json], object] | None = None,
        on_error: Callable[[CommandError], None] | None = None,
    ) -> Json:
        """Send ``frame`` (its ``ref`` is added) and return the reply's data."""
        if self.stopped is not None and not self.running:
            raise self.stopped
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._outbox.put(Command(frame, future, durable, on_reply, on_error))
        self.start()
        return await future

    async def join(self, conversation_id: int, since: int | None) -> JoinResult:
        """Start following a conversation; its entries reach :attr:`events` from ``since``."""
        if self.stopped is not None and not self.running:
            raise self.stopped
        stream = self.streams.get(conversation_id)
        if stream is None:
            stream = ConversationStream(conversation_id, since, self._emit, self._fetch_after)
            self.streams[conversation_id] = stream
        joined = stream.wait_joined()
        if self.connected.is_set():
            self._outbox.put(self._join_command(stream), first=True)
        # Not connected: the next connection joins every stream first.
        self.start()
        return await joined

    def leave(self, conversation_id: int) -> None:
        stream = self.streams.pop(conversation_id, None)
        if stream is not None:
            stream.close()

    def _join_command(self, stream: ConversationStream) -> Command:
        frame: dict[str, Any] = {"type": "join", "conversation_id": stream.conversation_id}
        if stream.delivered is not None and self._replay:
            frame["since"] = stream.delivered
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)

        def refused(error: CommandError) -> None:
            if error.code == "not_found":  # removed while we were away
                self._drop_stream(stream.conversation_id)
            stream.on_join_error(error)

        return Command(frame, future, False, stream.on_join_reply, refused)

    def _drop_stream(self, conversation_id: int) -> None:
        stream = self.streams.pop(conversation_id, None)
        if stream is not None:
            stream.close()
            self._emit(Removed(conversation_id))

    async def _fetch_after(self, conversation_id: int, after: int) -> tuple[list[Entry], bool]:
        return await self._http.history_page(conversation_id, limit=FILL_PAGE, after=after)

    def _emit(self, event: Event) -> None:
        self.events.put_nowait(event)

    # --- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._reconnect_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must end the event stream, not leave it hanging
            log.exception("the client's connection loop failed")
            self._finish(TrustMessError(f"the connection loop failed: {exc!r}"))

    async def _reconnect_loop(self) -> None:
        attempt = 0
        refused: str | None = None  # a token the server refused: never connect with it again
        while not self._closing:
            code: int | None = None
            token: str | None = None
            try:
                if refused is not None:
                    token = await self._tokens.refresh(stale=refused)
                    refused = None
                else:
                    token = await self._tokens.access_token()
                ws = await self._open(token)
            except (SessionExpired, NotLoggedIn) as exc:
                self._finish(exc)
                return
            except InvalidStatus as exc:
                status = exc.response.status_code
                action = CloseAction.REFRESH if status == 401 else CloseAction.RECONNECT
                if status in (400, 403, 404):  # Origin refused, not a TrustMess /ws: no loop
                    self._finish(ClientStopped(f"the upgrade was refused with HTTP {status}"))
                    return
                log.info("socket upgrade refused: HTTP %s", status)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                action = CloseAction.RECONNECT
                log.info("cannot connect: %s", exc)
            except RefreshNotSent as exc:
                action = CloseAction.RECONNECT
                log.info("cannot refresh the token: %s", exc)
            else:
                started = time.monotonic()
                code = await self._serve(ws, token)
                self.close_codes.append(code)
                if self._closing:
                    return
                if time.monotonic() - started >= self._policy.stable_s:
                    attempt = 0
                action = close_action(code)
                self._replay = code != 4009
                log.info("socket closed with %s: %s", code, action.value)
            if action is CloseAction.STOP:
                self._finish(ClientStopped(f"the server closed the socket with {code}", code))
                return
            if action is CloseAction.REFRESH and token is not None:
                refused = token  # refreshed before the next attempt (retried until it works)
            delay = self._policy.delay(attempt)
            if action is CloseAction.SLOW_DOWN:
                delay = max(delay, self._policy.rate_limited_pause_s)
            attempt += 1
            await asyncio.sleep(delay)

    async def _open(self, token: str) -> ClientConnection:
        """Connect with the token in the header; wait for ``hello``."""
        ws = await connect(
            self._ws_url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=self._policy.connect_timeout_s,
            max_size=MAX_INCOMING_BYTES,
            proxy=None,
        )
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                hello = json.loads(await ws.recv())
            if hello.get("type") != "hello":
                raise websockets.exceptions.InvalidMessage(f"expected hello, got {hello!r:.100}")
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _serve(self, ws: ClientConnection, token: str) -> int | None:
        """Run one connection until it closes; return its close code."""
        self._ws = ws
        self.connections += 1
        if self.close_codes:
            self._emit(Reconnected(self.close_codes[-1]))
        # Joins first, so that resent messages find the conversations joined; then what was
        # unanswered on the last connection, in its order.
        self._outbox.put_first([self._join_command(s) for s in self.streams.values()])
        self.connected.set()
        if self.presence_wanted and self.connections > 1:
            self._resubscribing = asyncio.create_task(self._resubscribe_presence())
        writer = asyncio.create_task(self._write_loop(ws))
        reauth = asyncio.create_task(self._reauth_loop(token))
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if isinstance(frame, dict):
                    self._on_frame(frame)
                else:
                    log.warning("ignoring a frame that is not an object: %.100r", raw)
        except ConnectionClosed:
            pass
        finally:
            self.connected.clear()
            self._ws = None
            for task in (writer, reauth):
                task.cancel()
            await asyncio.gather(writer, reauth, return_exceptions=True)
            self._outbox.connection_lost()
        return ws.close_code

    async def subscribe_presence(self) -> list[Presence]:
        """Subscribe this socket (and every later one) to presence; the snapshot."""
        self.presence_wanted = True
        data = await self.command({"type": "presence"}, durable=False)
        return [Presence.parse(user) for user in data["users"]]

    async def _resubscribe_presence(self) -> None:
        with contextlib.suppress(TrustMessError):
            for state in await self.subscribe_presence():
                self._emit(state)

    async def _write_loop(self, ws: ClientConnection) -> None:
        while True:
            ref, command = await self._outbox.next()
            await ws.send(json.dumps({**command.frame, "ref": ref}))

    async def _reauth_loop(self, socket_token: str) -> None:
        """Keep the socket's token ahead of its expiry (§1.3), following every rotation."""
        tokens = self._tokens
        while True:
            try:
                token = await tokens.access_token()
            except SessionExpired:
                return  # the socket runs until 4002, which ends the session
            except RefreshNotSent as exc:
                log.info("cannot refresh the token yet: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if token != socket_token:
                try:
                    await self.command({"type": "auth", "token": token}, durable=False)
                except CommandError as exc:
                    log.warning("the socket refused a fresh token: %s", exc)
                socket_token = token
            tokens.rotated.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, tokens.renew_at() - time.monotonic())):
                    await tokens.rotated.wait()

    # --- frames ------------------------------------------------------------------------

    def _on_frame(self, frame: Json) -> None:
        kind = frame.get("type")
        if kind == "reply":
            self._outbox.on_reply(frame.get("ref"), frame.get("data") or {})
        elif kind == "error":
            self._on_error(frame)
        elif kind == "message" or kind == "change":
            self._on_entry(frame)
        elif kind == "hello":
            pass
        else:
            event = parse_event(frame)
            if isinstance(event, Removed):
                stream = self.streams.pop(event.conversation_id, None)
                if stream is not None:
                    stream.close()
            self._emit(event)

    def _on_entry(self, frame: Json) -> None:
        event = parse_event(frame)
        if not isinstance(event, Message | Change):
            self._emit(event)
            return
        stream = self.streams.get(event.conversation_id)
        if stream is None:
            self._emit(event)  # not followed by the SDK (left meanwhile): pass it on
        else:
            stream.add(event)

    def _on_error(self, frame: Json) -> None:
        error = CommandError(str(frame.get("code")), str(frame.get("message")), frame.get("field"))
        ref = frame.get("ref")
        if ref is not None:
            self._outbox.on_error(ref, error)
        elif error.code == "rate_limited":
            self._outbox.on_refused_unread()
        else:
            log.warning("error frame without ref: %s", frame)


def _consume(future: asyncio.Future[Json]) -> None:
    """Mark an internal command's outcome as seen (nobody awaits it)."""
    if not future.cancelled():
        future.exception()
