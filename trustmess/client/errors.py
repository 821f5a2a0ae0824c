"""The SDK's exceptions: one base class, and one class per way a call or the session can end."""

from __future__ import annotations


class TrustMessError(Exception):
    """Base of every exception the SDK raises on purpose."""


class ApiError(TrustMessError):
    """The server answered an HTTP request with an error (``{"error": {code, message}}``)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class CommandError(TrustMessError):
    """The server refused a socket command with an ``error`` frame (protocol/README.md §5)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


class SessionExpired(TrustMessError):
    """The tokens cannot be renewed: the refresh token was refused (logged out elsewhere,
    password changed, account disabled) or its refresh's answer was lost, so it must not be
    sent again. Log in again."""


class NotLoggedIn(TrustMessError):
    """A call that needs a session was made before ``login``."""


class ConnectionLost(TrustMessError):
    """The socket closed before a command that is not resent (``typing``, ``ping``) was
    answered."""


class ClientStopped(TrustMessError):
    """The live connection stopped for good: closed by the application, or by a close code
    after which a client must not reconnect on its own (4006 replaced, 1000, 1008, 1009; see
    protocol/README.md §7). ``close_code`` is that code (None when the application closed)."""

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code
