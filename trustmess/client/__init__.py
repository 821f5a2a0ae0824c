"""The reference Python client of TrustMess: ``from trustmess.client import Client``.

It imports nothing of the server; see protocol/README.md ("Python client") for what it
guarantees, and ``python -m trustmess.client --help`` for its command line.
"""

from trustmess.client.client import Client, new_client_id
from trustmess.client.errors import (
    ApiError,
    ClientStopped,
    CommandError,
    ConnectionLost,
    NotLoggedIn,
    SessionExpired,
    TrustMessError,
)
from trustmess.client.events import (
    ContactChange,
    ConversationUpdate,
    Event,
    InvitationChange,
    Presence,
    Read,
    Reconnected,
    Removed,
    Typing,
    UnknownEvent,
    parse_event,
)
from trustmess.client.models import (
    BlockedUser,
    Change,
    ChangeResult,
    Contact,
    ContactRequest,
    Conversation,
    Entry,
    Invitation,
    JoinResult,
    LoginSession,
    Member,
    Message,
    Reaction,
    SentMessage,
    User,
)
from trustmess.client.reconnect import ReconnectPolicy

__all__ = [
    "ApiError",
    "BlockedUser",
    "Change",
    "ChangeResult",
    "Client",
    "ClientStopped",
    "CommandError",
    "ConnectionLost",
    "Contact",
    "ContactChange",
    "ContactRequest",
    "Conversation",
    "ConversationUpdate",
    "Entry",
    "Event",
    "Invitation",
    "InvitationChange",
    "JoinResult",
    "LoginSession",
    "Member",
    "Message",
    "NotLoggedIn",
    "Presence",
    "Reaction",
    "Read",
    "ReconnectPolicy",
    "Reconnected",
    "Removed",
    "SentMessage",
    "SessionExpired",
    "TrustMessError",
    "Typing",
    "UnknownEvent",
    "User",
    "new_client_id",
    "parse_event",
]
