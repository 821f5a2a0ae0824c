"""Named error codes and WebSocket close codes, shared by the HTTP surface and the socket."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Machine-readable ``code`` of an HTTP JSON error or a protocol ``error`` frame."""

    BAD_REQUEST = "bad_request"
    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    REQUEST_TIMEOUT = "request_timeout"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAUTHENTICATED = "unauthenticated"
    TOKEN_EXPIRED = "token_expired"
    INVALID_CREDENTIALS = "invalid_credentials"
    ACCOUNT_DISABLED = "account_disabled"
    FORBIDDEN = "forbidden"
    # The other user's consent settings (or a block, which answers the same) refuse this.
    NOT_ALLOWED = "not_allowed"
    # A direct conversation in which one member has blocked the other: no new messages.
    BLOCKED = "blocked"
    USERNAME_TAKEN = "username_taken"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """WebSocket close codes; 4000-4999 are TrustMess's own (see protocol/README.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # reconnect and resume
    ABNORMAL = 1006  # no close frame (connection lost); never sent, only recorded
    TOO_BIG = 1009
    INTERNAL = 1011  # reconnect with backoff
    AUTH_FAILED = 4001  # do not retry with the same token
    TOKEN_EXPIRED = 4002  # refresh, then reconnect
    REPLACED = 4006  # a newer connection of the same user took the slot
    RATE_LIMITED = 4008
    TOO_SLOW = 4009  # reconnect and resume


class ApiError(Exception):
    """An error with a code, a client-facing message and an HTTP status.

    Raised by views and commands; HTTP turns it into ``{"error": {...}}``, the socket into an
    ``error`` frame. ``field`` names the offending input when there is one.
    """

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": str(self.code), "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error.update(self.extra)
        return {"error": error}


def invalid(field: str, message: str) -> ApiError:
    """422 ``invalid`` naming the field."""
    return ApiError(422, ErrorCode.INVALID, f"{field}: {message}", field=field)


def not_found(what: str = "not found") -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, what)


def conversation_not_found() -> ApiError:
    """404 for a conversation that does not exist or that the caller is not a member of (the
    same answer for both, so membership cannot be probed)."""
    return not_found("conversation not found")


def not_allowed(message: str) -> ApiError:
    """403 ``not_allowed``: the other user's consent settings refuse this. A block answers the
    same, so the blocked side cannot tell one from the other."""
    return ApiError(403, ErrorCode.NOT_ALLOWED, message)


def conversation_blocked() -> ApiError:
    """403 ``blocked``: a new message (or edit, or reaction) in a direct conversation in which
    one member has blocked the other."""
    return ApiError(403, ErrorCode.BLOCKED, "this direct conversation is blocked: no new messages")


def rate_limited(retry_after_s: float) -> ApiError:
    seconds = max(1, int(retry_after_s + 0.999))
    return ApiError(
        429,
        ErrorCode.RATE_LIMITED,
        f"too many requests; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )
