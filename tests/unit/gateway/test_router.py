"""trustmess.gateway.router: command → handler, and the answer every outcome gets.

The handlers themselves need the database; here they are replaced by stand-ins, so only the
dispatch and its uniform answers (reply, error, internal error) are under test.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from trustmess.appkeys import METRICS
from trustmess.errors import ApiError, ErrorCode, invalid, not_found
from trustmess.gateway import commands, router
from trustmess.metrics import Metrics
from trustmess.wire import frames

Json = Any


class RecordingConnection:
    """What the router uses of a Connection: ``send``."""

    def __init__(self) -> None:
        self.sent: list[Json] = []

    def send(self, payload: bytes) -> None:
        self.sent.append(orjson.loads(payload))


@pytest.fixture
def app() -> web.Application:
    application = web.Application()
    application[METRICS] = Metrics()
    return application


@pytest.fixture
def conn() -> RecordingConnection:
    return RecordingConnection()


def answering(result: Any) -> Callable[..., Awaitable[Any]]:
    async def handler(app: web.Application, conn: Any, command: Any) -> Any:
        if isinstance(result, BaseException):
            raise result
        return result

    return handler


def message(ref: frames.Ref) -> frames.SendMessage:
    return frames.SendMessage(ref, 7, "c-1", "hi", None)


def test_every_command_but_message_has_a_handler() -> None:
    assert set(router.HANDLERS) | {frames.SendMessage} == set(typing.get_args(frames.Command))
    assert frames.SendMessage not in router.HANDLERS


async def test_a_command_with_ref_gets_a_reply(app: web.Application, conn: Any) -> None:
    await router.dispatch(app, conn, frames.Ping("p-1"))
    assert conn.sent == [{"type": "reply", "ref": "p-1", "data": {}}]


async def test_a_command_without_ref_gets_no_reply(app: web.Application, conn: Any) -> None:
    await router.dispatch(app, conn, frames.Ping(None))
    assert conn.sent == []


async def test_a_handler_that_answers_by_itself_gets_no_reply(
    app: web.Application, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(router.HANDLERS, frames.Leave, answering(None))
    await router.dispatch(app, conn, frames.Leave("l-1", 7))
    assert conn.sent == []


@pytest.mark.parametrize("ref", ["j-1", 0, None])
async def test_a_refused_command_gets_an_error_with_its_ref(
    app: web.Application, conn: Any, monkeypatch: pytest.MonkeyPatch, ref: frames.Ref
) -> None:
    refusal = not_found("conversation not found")
    monkeypatch.setitem(router.HANDLERS, frames.Join, answering(refusal))
    await router.dispatch(app, conn, frames.Join(ref, 7, None))
    expected = {"type": "error", "code": "not_found", "message": "conversation not found"}
    if ref is not None:
        expected["ref"] = ref
    assert conn.sent == [expected]
    assert app[METRICS].errors == {ErrorCode.NOT_FOUND: 1}


async def test_an_invalid_field_is_named(
    app: web.Application, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusal = invalid("seq", "is beyond the last message (0)")
    monkeypatch.setitem(router.HANDLERS, frames.Ack, answering(refusal))
    await router.dispatch(app, conn, frames.Ack("a-1", 7, 1))
    assert conn.sent == [
        {
            "type": "error",
            "ref": "a-1",
            "code": "invalid",
            "message": "seq: is beyond the last message (0)",
            "field": "seq",
        }
    ]


async def test_an_unexpected_failure_is_an_internal_error(
    app: web.Application,
    conn: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(router.HANDLERS, frames.Typing, answering(KeyError("secret detail")))
    with caplog.at_level(logging.ERROR, logger=router.__name__):
        await router.dispatch(app, conn, frames.Typing("t-1", 7, "start"))
    # The client learns nothing of the cause; the log does.
    assert conn.sent == [
        {"type": "error", "ref": "t-1", "code": "internal", "message": "internal error"}
    ]
    assert "command Typing failed" in caplog.text
    assert "secret detail" in caplog.text
    assert app[METRICS].errors == {ErrorCode.INTERNAL: 1}


async def test_message_runs_without_a_coroutine(
    app: web.Application, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[frames.SendMessage] = []
    monkeypatch.setattr(commands, "message", lambda app, conn, command: calls.append(command))
    command = message("m-1")
    assert router.dispatch_now(app, conn, command) is True
    assert calls == [command]
    assert conn.sent == []  # the reply comes from the group commit, not the router


async def test_dispatch_hands_message_to_dispatch_now(
    app: web.Application, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[frames.SendMessage] = []
    monkeypatch.setattr(commands, "message", lambda app, conn, command: calls.append(command))
    await router.dispatch(app, conn, message(None))
    assert calls == [message(None)]


async def test_dispatch_now_leaves_other_commands_alone(
    app: web.Application, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "message", lambda *args: pytest.fail("message called"))
    assert router.dispatch_now(app, conn, frames.Ping("p")) is False
    assert conn.sent == []


async def test_a_message_refused_at_once_gets_an_error(
    app: web.Application, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(app: web.Application, conn: Any, command: frames.SendMessage) -> None:
        raise ApiError(503, ErrorCode.UNAVAILABLE, "server is shutting down")

    monkeypatch.setattr(commands, "message", refuse)
    assert router.dispatch_now(app, conn, message("m-2")) is True
    assert conn.sent == [
        {"type": "error", "ref": "m-2", "code": "unavailable", "message": "server is shutting down"}
    ]
    assert app[METRICS].errors == {ErrorCode.UNAVAILABLE: 1}
