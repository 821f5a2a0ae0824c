"""Sending a message: the one path shared by ``POST /conversations/{id}/messages`` and the
socket ``message`` command (membership, idempotent group-committed store, fan-out)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trustmess.delivery.hub import Hub
from trustmess.delivery.readbuffer import ReadMarkerBuffer
from trustmess.delivery.writer import Answer, MessageWriter, WriterClosed
from trustmess.errors import ApiError, ErrorCode
from trustmess.models import Message, SendResult
from trustmess.store.messages import NewMessage
from trustmess.wire import events


def submit_message(writer: MessageWriter, message: NewMessage, answer: Answer) -> None:
    """Queue the message for the next group commit; ``answer`` is called after commit.

    It gets the SendResult, or ApiError ``not_found`` when the sender is not a member and
    ``invalid`` (field ``reply_to``) when reply_to is not an existing seq of the conversation.
    Raises ApiError ``unavailable`` at once while the server shuts down.
    """
    try:
        writer.submit_with(message, answer)
    except WriterClosed:
        raise _shutting_down() from None


async def send_message(writer: MessageWriter, message: NewMessage) -> SendResult:
    """Store the message (or find the one already stored under ``client_msg_id``)."""
    try:
        future = writer.submit(message)
    except WriterClosed:
        raise _shutting_down() from None
    # shield: a client that disconnects must not cancel the write of a queued message.
    return await asyncio.shield(future)


def _shutting_down() -> ApiError:
    return ApiError(503, ErrorCode.UNAVAILABLE, "server is shutting down")


def message_publisher(hub: Hub, markers: ReadMarkerBuffer) -> Callable[[Message], None]:
    """The writer's callback: publish a committed message to its conversation (and note that
    the sender has read up to it)."""

    def publish(message: Message) -> None:
        hub.publish(message.conversation_id, events.message(message), seq=message.seq)
        markers.note_last_seq(message.conversation_id, message.seq)
        markers.note_read(message.conversation_id, message.sender_id, message.seq)

    return publish
