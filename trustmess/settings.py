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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "TRUSTMESS_"


class SettingsError(ValueError):
    """A setting has a value the server cannot start with."""


def _parse_int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _parse_float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


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
    return tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())


def _parse_str(raw: str) -> str:
    return raw


def _parse_optional_str(raw: str) -> str | None:
    return raw or None


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


def _setting(default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """Server configuration. Field ``x_y`` is read from ``TRUSTMESS_X_Y``."""

    database_url: str | None = _setting(
        None, _parse_database_url, "PostgreSQL URL; unset starts the embedded database"
    )
    host: str = _setting("127.0.0.1", _parse_str, "address to listen on")
    port: int = _setting(8080, _parse_int(0, 65535), "TCP port to listen on")
    data_dir: Path = _setting(
        Path(".trustmess"), lambda raw: Path(raw), "embedded database and generated secret"
    )
    jwt_secret: str | None = _setting(
        None, _parse_optional_str, "HS256 signing key (generated in embedded mode)"
    )
    log_level: str = _setting("INFO", _parse_log_level, "DEBUG, INFO, WARNING or ERROR")
    log_format: str = _setting("text", _parse_log_format, "text, or json (one object per line)")
    pool_min: int = _setting(2, _parse_int(1, 1000), "minimum database connections")
    pool_max: int = _setting(20, _parse_int(1, 1000), "maximum database connections")
    access_token_ttl_s: int = _setting(900, _parse_int(10, 86400), "access token lifetime")
    refresh_token_ttl_s: int = _setting(
        30 * 86400, _parse_int(60, 365 * 86400), "refresh token lifetime"
    )
    bcrypt_rounds: int = _setting(12, _parse_int(4, 16), "bcrypt cost factor")
    auth_rate_per_s: float = _setting(
        0.5, _parse_float(0.001, 1e6), "login/signup refill per address and per username"
    )
    auth_burst: int = _setting(10, _parse_int(1, 1_000_000), "login/signup burst")
    allowed_origins: tuple[str, ...] = _setting(
        (), _parse_origins, "comma-separated Origin allow-list for /ws (empty: same host only)"
    )
    ws_heartbeat_s: float = _setting(30.0, _parse_float(1, 3600), "WebSocket ping interval")
    ws_auth_timeout_s: float = _setting(10.0, _parse_float(0.1, 600), "first-frame auth window")
    ws_max_frame_bytes: int = _setting(65536, _parse_int(1024, 16 << 20), "largest client frame")
    ws_compression: bool = _setting(False, _parse_bool, "per-message deflate")
    ws_rate_per_s: float = _setting(30.0, _parse_float(0.1, 1e6), "commands/s per connection")
    ws_burst: int = _setting(60, _parse_int(1, 1_000_000), "command burst per connection")
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
    commit_batch_max: int = _setting(1024, _parse_int(1, 100_000), "messages per group commit")
    commit_window_ms: float = _setting(0.0, _parse_float(0, 1000), "group-commit wait window")
    read_flush_ms: float = _setting(50.0, _parse_float(0, 60_000), "ack write-behind delay")
    group_commit: bool = _setting(True, _parse_bool, "batch message inserts")
    broker: str = _setting("local", _parse_broker, "'local' or redis://host:port/db")
    broker_gap_ms: float = _setting(200.0, _parse_float(1, 60_000), "wait for a missing seq")
    broker_grace_s: float = _setting(5.0, _parse_float(0.1, 3600), "bus outage → close 1001")
    workers: int = _setting(1, _parse_int(1, 256), "server processes sharing the port")

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings from ``env`` (default ``os.environ``) then raw string ``overrides``."""
        env = os.environ if env is None else env
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            raw = overrides.get(f.name, env.get(name))
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
        settings = cls(**values)
        if settings.pool_min > settings.pool_max:
            raise SettingsError("TRUSTMESS_POOL_MIN: must not exceed TRUSTMESS_POOL_MAX")
        return settings

    @property
    def embedded(self) -> bool:
        """True when the server runs its own PostgreSQL."""
        return self.database_url is None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


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
