"""Settings: one frozen dataclass built from ``TRUSTMESS_*`` environment variables.

Every field can also be set by a CLI flag (``--port 9000`` for ``TRUSTMESS_PORT``); the flag
wins over the variable. Bad values raise :class:`SettingsError` with one line naming the
variable, which ``__main__`` prints instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ENV_PREFIX = "TRUSTMESS_"

Network = IPv4Network | IPv6Network


class SettingsError(ValueError):
    """A setting has a value the server cannot start with."""


@dataclass(frozen=True, slots=True)
class IntRange:
    """Parses an integer within [lo, hi]; shown in ``--help`` as its range."""

    lo: int
    hi: int

    def __call__(self, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be between {self.lo} and {self.hi}, got {value}")
        return value

    def __str__(self) -> str:
        return f"integer {self.lo}-{self.hi}"


@dataclass(frozen=True, slots=True)
class FloatRange:
    """Parses a number within [lo, hi]; shown in ``--help`` as its range."""

    lo: float
    hi: float

    def __call__(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be between {self.lo:g} and {self.hi:g}, got {value:g}")
        return value

    def __str__(self) -> str:
        return f"number {_number(self.lo)}-{_number(self.hi)}"


def _number(value: float) -> str:
    """``30`` for 30.0, ``0.001``, ``1000000`` (not ``1e+06``)."""
    return str(int(value)) if value == int(value) else repr(value)


_parse_int = IntRange
_parse_float = FloatRange


def _parse_optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with an empty value meaning unset (None)."""

    def parse_or_none(raw: str) -> Any:
        return None if raw == "" else parse(raw)

    return parse_or_none


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _parse_database_url(raw: str) -> str | None:
    if raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError("must be a postgresql:// URL")
    if not parts.netloc and "host=" not in parts.query:
        raise ValueError("must name a host (postgresql://user@host:port/db)")
    return raw


def _parse_broker(raw: str) -> str:
    if raw == "local":
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ValueError(f"must be 'local' or a redis://host:port/db URL, got {raw!r}")
    return raw


def _parse_origins(raw: str) -> tuple[str, ...]:
    """``*``, or origins (``scheme://host[:port]``), lower-cased as browsers send them."""
    origins = []
    for entry in raw.split(","):
        origin = entry.strip().rstrip("/").lower()
        if not origin:
            continue
        if origin != "*":
            parts = urlsplit(origin)
            if not parts.scheme or not parts.netloc or parts.path or parts.query or parts.fragment:
                raise ValueError(
                    f"must be * or origins such as https://chat.example.org, got {entry.strip()!r}"
                )
        origins.append(origin)
    return tuple(origins)


def _parse_networks(raw: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks, IPv4 or IPv6."""
    networks = []
    for entry in raw.split(","):
        if not entry.strip():
            continue
        try:
            networks.append(ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"must be IP addresses or CIDR blocks such as 10.0.0.0/8 or ::1, got {entry!r}"
            ) from None
    return tuple(networks)


def _parse_optional_port(raw: str) -> int | None:
    if raw == "":
        return None
    return IntRange(0, 65535)(raw)


def _parse_metrics_token(raw: str) -> str | None:
    if raw == "":
        return None
    if len(raw) < 16:
        raise ValueError("must be at least 16 characters")
    return raw


def _parse_str(raw: str) -> str:
    return raw


def _parse_optional_str(raw: str) -> str | None:
    return raw or None


def _parse_smtp_url(raw: str) -> str | None:
    """``smtp://[user:password@]host[:port][?starttls=require|off]`` or ``smtps://...``;
    empty: no SMTP server (mails are logged)."""
    if raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ValueError("must be an smtp://host:port or smtps://host:port URL")
    try:
        parts.port  # noqa: B018 (raises for a port out of range or not a number)
    except ValueError:
        raise ValueError("has a port that is not a number 0-65535") from None
    if parts.path not in {"", "/"} or parts.fragment:
        raise ValueError("must not have a path or fragment (smtp://user:password@host:port)")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"starttls"}:
        raise ValueError("takes only the starttls=require or starttls=off parameter")
    starttls = query.get("starttls", [])
    if len(starttls) > 1 or (starttls and starttls[0] not in {"require", "off"}):
        raise ValueError("starttls must be require or off")
    if starttls and parts.scheme == "smtps":
        raise ValueError("starttls applies to smtp:// only (smtps:// is TLS from the start)")
    return raw


def _parse_public_url(raw: str) -> str | None:
    """The base URL links in mails start with: ``https://chat.example.org[/prefix]``."""
    if raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"must be an http:// or https:// URL, got {raw!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return raw.rstrip("/")


def _parse_mail_from(raw: str) -> str:
    """A sender: ``noreply@example.org`` or ``TrustMess <noreply@example.org>``."""
    _, address = parseaddr(raw)
    if address.count("@") != 1 or any(c in raw for c in "\r\n\x00"):
        raise ValueError(f"must be an address such as TrustMess <noreply@example.org>, got {raw!r}")
    return raw


def _parse_log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def _parse_log_format(raw: str) -> str:
    log_format = raw.lower()
    if log_format not in {"text", "json"}:
        raise ValueError(f"must be text or json, got {raw!r}")
    return log_format


def _setting(default: Any, parse: Callable[[str], Any], doc: str, values: str = "") -> Any:
    """A field read from its variable with ``parse``; ``values`` says what it takes (for
    ``--help``; a range parser says it itself)."""
    if not values:
        values = "true or false" if parse is _parse_bool else str(parse)
    return field(default=default, metadata={"parse": parse, "doc": doc, "values": values})


def describe_default(value: Any) -> str:
    """A default as ``--help`` and the README show it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == ():
        return "empty"
    if isinstance(value, float):
        return _number(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Settings:
    """Server configuration. Field ``x_y`` is read from ``TRUSTMESS_X_Y``."""

    database_url: str | None = _setting(
        None,
        _parse_database_url,
        "PostgreSQL URL; unset starts the embedded database",
        "postgresql://user:password@host:port/db",
    )
    host: str = _setting("127.0.0.1", _parse_str, "address to listen on", "IP address or name")
    port: int = _setting(8080, _parse_int(0, 65535), "TCP port to listen on")
    data_dir: Path = _setting(
        Path(".trustmess"), Path, "embedded database and generated secret", "a directory"
    )
    jwt_secret: str | None = _setting(
        None,
        _parse_optional_str,
        "HS256 signing key (generated in embedded mode)",
        "at least 32 characters",
    )
    log_level: str = _setting(
        "INFO", _parse_log_level, "least severe log level shown", "DEBUG, INFO, WARNING or ERROR"
    )
    log_format: str = _setting(
        "text", _parse_log_format, "log line format (json: one object per line)", "text or json"
    )
    access_log: bool = _setting(
        False, _parse_bool, "one log line per HTTP request and per socket open and close"
    )
    web: bool = _setting(True, _parse_bool, "serve the web client at / (false: the API only)")
    metrics_token: str | None = _setting(
        None,
        _parse_metrics_token,
        "bearer token GET /metrics requires (unset: none)",
        "at least 16 characters",
    )
    metrics_host: str = _setting(
        "127.0.0.1",
        _parse_str,
        "address of the separate metrics listener (with METRICS_PORT)",
        "IP address or name",
    )
    metrics_port: int | None = _setting(
        None,
        _parse_optional_port,
        "serve /metrics on this port only, not on PORT (unset: on PORT)",
        "integer 0-65535",
    )
    pool_min: int = _setting(2, _parse_int(1, 1000), "minimum database connections")
    pool_max: int = _setting(20, _parse_int(1, 1000), "maximum database connections")
    access_token_ttl_s: int = _setting(900, _parse_int(10, 86400), "access token lifetime")
    refresh_token_ttl_s: int = _setting(
        30 * 86400, _parse_int(60, 365 * 86400), "refresh token lifetime"
    )
    bcrypt_rounds: int = _setting(12, _parse_int(4, 16), "bcrypt cost factor")
    bcrypt_queue_max: int = _setting(
        8, _parse_int(0, 100_000), "password checks waiting for a bcrypt thread (then 503)"
    )
    bcrypt_per_address: int = _setting(
        2, _parse_int(1, 100_000), "password checks queued or running per address (then 429)"
    )
    auth_rate_per_s: float = _setting(
        0.5, _parse_float(0.001, 1e6), "login/signup refill per address and per username"
    )
    auth_burst: int = _setting(10, _parse_int(1, 1_000_000), "login/signup burst")
    login_failure_rate_per_s: float = _setting(
        0.05,
        _parse_float(0.0001, 1e6),
        "failed logins/s per username from addresses it has not logged in from",
    )
    login_failure_burst: int = _setting(
        20, _parse_int(1, 1_000_000), "failed-login burst per username (such addresses)"
    )
    search_rate_per_s: float = _setting(
        5.0, _parse_float(0.001, 1e6), "directory searches/s per user"
    )
    search_burst: int = _setting(30, _parse_int(1, 1_000_000), "directory search burst per user")
    conversation_change_rate_per_min: float = _setting(
        6.0, _parse_float(0.001, 1e6), "renames and member changes per conversation per minute"
    )
    conversation_change_burst: int = _setting(
        20, _parse_int(1, 1_000_000), "burst of renames and member changes per conversation"
    )
    contact_request_rate_per_hour: float = _setting(
        20.0,
        _parse_float(0.001, 1e6),
        "contact requests and group invitations a user may send per hour",
    )
    contact_request_burst: int = _setting(
        10, _parse_int(1, 1_000_000), "burst of contact requests and group invitations per user"
    )
    contact_request_cooldown_s: int = _setting(
        7 * 86400,
        _parse_int(0, 10 * 365 * 86400),
        "how long after a decline the same request cannot reach its recipient again",
    )
    invitations_pending_max: int = _setting(
        50, _parse_int(1, 100_000), "pending group invitations a user can hold (more are dropped)"
    )
    allowed_origins: tuple[str, ...] = _setting(
        (),
        _parse_origins,
        "browser origins allowed besides the server's own, for /ws and CORS",
        "comma-separated origins (https://chat.example.org), or *",
    )
    trusted_proxies: tuple[Network, ...] = _setting(
        (),
        _parse_networks,
        "reverse proxies whose Forwarded/X-Forwarded-For name the client",
        "comma-separated IP addresses or CIDR blocks",
    )
    http_read_timeout_s: float = _setting(
        20.0,
        _parse_float(0.1, 3600),
        "time to send a request head (after connecting or the last answer), and its body",
    )
    ws_unauthenticated_per_address: int = _setting(
        16, _parse_int(1, 1_000_000), "sockets waiting for first-frame auth per address"
    )
    ws_heartbeat_s: float = _setting(30.0, _parse_float(1, 3600), "WebSocket ping interval")
    ws_auth_timeout_s: float = _setting(10.0, _parse_float(0.1, 600), "first-frame auth window")
    ws_max_frame_bytes: int = _setting(65536, _parse_int(1024, 16 << 20), "largest client frame")
    ws_compression: bool = _setting(False, _parse_bool, "per-message deflate")
    ws_rate_per_s: float = _setting(30.0, _parse_float(0.1, 1e6), "commands/s per connection")
    ws_burst: int = _setting(60, _parse_int(1, 1_000_000), "command burst per connection")
    send_rate_per_s: float | None = _setting(
        None,
        _parse_optional(_parse_float(0.001, 1e6)),
        "messages/s per user on a node, HTTP and sockets together (unset: WS_RATE_PER_S)",
    )
    send_burst: int | None = _setting(
        None,
        _parse_optional(_parse_int(1, 1_000_000)),
        "message burst per user on a node (unset: WS_BURST)",
    )
    ws_abuse_s: float = _setting(10.0, _parse_float(0.1, 3600), "seconds over the rate → 4008")
    ws_max_per_user: int = _setting(20, _parse_int(1, 10000), "connections per user")
    ws_queue_frames: int = _setting(1000, _parse_int(1, 1_000_000), "outbound queue, frames")
    ws_queue_bytes: int = _setting(1 << 20, _parse_int(1024, 1 << 30), "outbound queue, bytes")
    replay_limit: int = _setting(500, _parse_int(0, 100_000), "most messages replayed on join")
    edit_window_s: int = _setting(
        48 * 3600, _parse_int(0, 10 * 365 * 86400), "how long a sender may edit (0: always)"
    )
    typing_throttle_s: float = _setting(2.0, _parse_float(0, 3600), "min gap between starts")
    typing_timeout_s: float = _setting(6.0, _parse_float(0.05, 3600), "automatic stop after")
    presence_grace_s: float = _setting(
        5.0, _parse_float(0, 3600), "a reconnect within this is no offline/online pair"
    )
    presence_ttl_s: float = _setting(
        15.0, _parse_float(0.3, 3600), "a dead node's users go offline within 4/3 of this"
    )
    commit_batch_max: int = _setting(1024, _parse_int(1, 100_000), "messages per group commit")
    commit_window_ms: float = _setting(
        0.0, _parse_float(0, 1000), "longest wait for others to share a commit"
    )
    read_flush_ms: float = _setting(50.0, _parse_float(0, 60_000), "ack write-behind delay")
    group_commit: bool = _setting(True, _parse_bool, "batch message inserts")
    broker: str = _setting(
        "local", _parse_broker, "event bus between processes", "local or redis://host:port/db"
    )
    broker_gap_ms: float = _setting(200.0, _parse_float(1, 60_000), "wait for a missing seq")
    broker_grace_s: float = _setting(5.0, _parse_float(0.1, 3600), "bus outage → close 1001")
    workers: int = _setting(1, _parse_int(1, 256), "server processes sharing the port")
    smtp_url: str | None = _setting(
        None,
        _parse_smtp_url,
        "SMTP server for mails (unset: mails are written to the log)",
        "smtp://user:password@host:port[?starttls=require|off] or smtps://...",
    )
    mail_from: str = _setting(
        "TrustMess <noreply@localhost>",
        _parse_mail_from,
        "sender of the server's mails",
        "an address, optionally with a name: TrustMess <noreply@example.org>",
    )
    public_url: str | None = _setting(
        None,
        _parse_public_url,
        "base URL of links in mails (unset: http://HOST:PORT)",
        "http:// or https:// URL",
    )
    verify_token_ttl_s: int = _setting(
        86400, _parse_int(60, 30 * 86400), "email verification link lifetime"
    )
    reset_token_ttl_s: int = _setting(3600, _parse_int(60, 86400), "password reset link lifetime")
    mails_per_recipient_per_hour: int = _setting(
        3, _parse_int(1, 1000), "mails to one address per hour (more are dropped silently)"
    )
    mail_queue_max: int = _setting(
        1000, _parse_int(1, 1_000_000), "mails waiting to be sent (more are dropped and logged)"
    )
    mail_attempts: int = _setting(8, _parse_int(1, 100), "tries to send one mail")
    mail_retry_s: float = _setting(
        2.0, _parse_float(0.01, 3600), "wait before the first retry (doubled each time, max 300)"
    )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from ``env`` (default ``os.environ``) then raw string ``overrides``
        (the command line's flags): a bad value is reported under the name it was given by,
        ``--port`` or ``TRUSTMESS_PORT``."""
        env = os.environ if env is None else env
        overrides = overrides or {}
        values: dict[str, Any] = {}
        names: dict[str, str] = {}
        for f in dataclasses.fields(cls):
            if f.name in overrides:
                raw, names[f.name] = overrides[f.name], flag_name(f.name)
            elif env_name(f.name) in env:
                raw, names[f.name] = env[env_name(f.name)], env_name(f.name)
            else:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{names[f.name]}: {exc}") from None
        settings = cls(**values)
        if settings.pool_min > settings.pool_max:
            name = names.get("pool_min") or names.get("pool_max") or env_name("pool_min")
            raise SettingsError(
                f"{name}: pool_min ({settings.pool_min}) must not exceed pool_max "
                f"({settings.pool_max})"
            )
        return settings

    @property
    def embedded(self) -> bool:
        """True when the server runs its own PostgreSQL."""
        return self.database_url is None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def flag_name(field_name: str) -> str:
    """``--ws-max-frame-bytes`` for ``ws_max_frame_bytes``."""
    return "--" + field_name.replace("_", "-")


def setting_fields() -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(Settings))


def resolve_jwt_secret(settings: Settings) -> Settings:
    """Return settings with a JWT secret, generating and storing one in embedded mode.

    A server on a real database must be given its secret: each node has to sign with the same
    key, and a generated one would silently differ between machines.
    """
    if settings.jwt_secret:
        if len(settings.jwt_secret) < 32:
            raise SettingsError("TRUSTMESS_JWT_SECRET: must be at least 32 characters")
        return settings
    if not settings.embedded:
        raise SettingsError(
            "TRUSTMESS_JWT_SECRET: required when TRUSTMESS_DATABASE_URL is set "
            "(use the same value on every node)"
        )
    path = settings.data_dir / "jwt_secret"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return settings.replace(jwt_secret=path.read_text().strip())
