"""Sending a message: the one path shared by ``POST /conversations/{id}/messages`` and the
socket ``message`` command (membership, idempotent group-committed store, fan-out); and the
same for changes (edit, delete, react, unreact) over HTTP and the socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trustmess.delivery.hub import Hub
from trustmess.delivery.readbuffer import ReadMarkerBuffer
from trustmess.delivery.writer import Answer, ChangeAnswer, MessageWriter, WriterClosed
from trustmess.errors import ApiError, ErrorCode
from trustmess.models import Change, ChangeResult, Message, SendResult
from trustmess.store.changes import NewChange
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


def submit_change(writer: MessageWriter, change: NewChange, answer: ChangeAnswer) -> None:
    """Queue an edit, delete or reaction for the next group commit; ``answer`` is called
    after commit with the ChangeResult or the ApiError that refused it."""
    try:
        writer.submit_change_with(change, answer)
    except WriterClosed:
        raise _shutting_down() from None


async def send_change(writer: MessageWriter, change: NewChange) -> ChangeResult:
    """Apply the change (or find the one stored under its ``client_change_id``)."""
    try:
        future = writer.submit_change(change)
    except WriterClosed:
        raise _shutting_down() from None
    return await asyncio.shield(future)


def _shutting_down() -> ApiError:
    return ApiError(503, ErrorCode.UNAVAILABLE, "server is shutting down")


def message_publisher(hub: Hub, markers: ReadMarkerBuffer) -> Callable[[Message], None]:
    """The writer's callback: publish a committed message to its conversation (and note that
    the sender has read up to it)."""

    def publish(message: Message) -> None:
        hub.publish(message.conversation_id, events.message(message), seq=message.seq)
        markers.note_last_seq(message.conversation_id, message.seq)
        markers.note_sent(message.conversation_id, message.sender_id, message.seq)

    return publish


def change_publisher(hub: Hub, markers: ReadMarkerBuffer) -> Callable[[Change], None]:
    """The writer's callback for changes: publish the entry to its conversation. Read markers
    do not move (a change is never unread), but acks may now reach its seq."""

    def publish(change: Change) -> None:
        hub.publish(change.conversation_id, events.change(change), seq=change.seq)
        markers.note_last_seq(change.conversation_id, change.seq)

    return publish
