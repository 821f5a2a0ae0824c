"""Log output: one line per record in both formats; JSON fields; no secrets in the server's log."""

from __future__ import annotations

import io
import logging
import re
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from tests.conftest import JWT_SECRET
from tests.serverproc import start_server
from trustmess.logs import JsonFormatter, TextFormatter, configure_logging, make_formatter

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def make_record(
    msg: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    level: int = logging.INFO,
    extra: dict[str, Any] | None = None,
    exc_info: bool = False,
) -> logging.LogRecord:
    """A record as ``logging.getLogger("trustmess.test").log(...)`` would make it."""
    logger = logging.getLogger("trustmess.test")
    info = None
    if exc_info:
        try:
            raise ValueError("broken\nacross lines")
        except ValueError:
            info = sys.exc_info()
    return logger.makeRecord(logger.name, level, __file__, 1, msg, args, info, extra=extra)


def test_json_record_has_the_documented_keys() -> None:
    line = JsonFormatter().format(make_record())
    assert "\n" not in line
    record = orjson.loads(line)
    assert list(record) == ["ts", "level", "logger", "msg", "pid"]
    assert RFC3339_MS_UTC.match(record["ts"]), record["ts"]
    assert record["level"] == "INFO"
    assert record["logger"] == "trustmess.test"
    assert record["msg"] == "hello world"
    assert record["pid"] > 0


def test_json_timestamp_is_utc_with_milliseconds() -> None:
    record = make_record()
    record.created = 1_700_000_000.987_654
    assert orjson.loads(JsonFormatter().format(record))["ts"] == "2023-11-14T22:13:20.987Z"


def test_json_carries_extra_fields_without_hiding_fixed_ones() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    extra = {"user_id": 7, "conversation": "c1", "obj": Opaque(), "level": "shadow"}
    record = orjson.loads(JsonFormatter().format(make_record(extra=extra)))
    assert record["user_id"] == 7 and record["conversation"] == "c1"
    assert record["obj"] == "opaque!"
    assert record["level"] == "INFO" and record["extra_level"] == "shadow"


def test_json_exception_is_one_line_with_exc() -> None:
    line = JsonFormatter().format(make_record("failed", (), logging.ERROR, exc_info=True))
    assert "\n" not in line
    record = orjson.loads(line)
    assert record["msg"] == "failed"
    assert record["exc"].startswith("Traceback (most recent call last):\n")
    assert "ValueError: broken\nacross lines" in record["exc"]


def test_json_message_with_line_breaks_stays_one_line() -> None:
    line = JsonFormatter().format(make_record("a\nb\r\nc", ()))
    assert "\n" not in line and "\r" not in line
    assert orjson.loads(line)["msg"] == "a\nb\r\nc"


def test_text_is_todays_format_on_one_line() -> None:
    line = TextFormatter().format(make_record())
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO trustmess.test hello world$", line)


def test_text_traceback_is_escaped_onto_one_line() -> None:
    line = TextFormatter().format(make_record("failed", (), logging.ERROR, exc_info=True))
    assert "\n" not in line and "\r" not in line
    assert " ERROR trustmess.test failed\\nTraceback (most recent call last):\\n" in line
    assert line.endswith("ValueError: broken\\nacross lines")


def test_configure_logging_writes_one_record_per_line() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    root.handlers.clear()
    try:
        configure_logging("INFO", "json", out)
        log = logging.getLogger("trustmess.test")
        log.debug("not at INFO")
        log.info("one", extra={"k": "v"})
        try:
            raise RuntimeError("two\nlines")
        except RuntimeError:
            log.exception("two")
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = saved
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [r["msg"] for r in records] == ["one", "two"]
    assert records[0]["k"] == "v" and "exc" not in records[0]
    assert "RuntimeError: two\nlines" in records[1]["exc"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        make_formatter("xml")


def with_password(dsn: str) -> tuple[str, str]:
    """``dsn`` with a password in its user info, and that password. The embedded test server
    trusts local connections and ignores it; a password already there is kept."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn, parts.password
    password = "db-password-must-not-leak"
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}")), password


async def test_server_logs_json_lines_without_secrets(database_url: str) -> None:
    dsn, password = with_password(database_url)
    server = await start_server(
        {
            "TRUSTMESS_DATABASE_URL": dsn,
            "TRUSTMESS_JWT_SECRET": JWT_SECRET,
            "TRUSTMESS_LOG_FORMAT": "json",
            # As much as the server and its libraries log, migrations' SQL included.
            "TRUSTMESS_LOG_LEVEL": "DEBUG",
        }
    )
    try:
        assert await server.stop() == 0, "".join(server.log)
        await server.wait_for_log(re.compile(r'"msg":"stopped"'))
    finally:
        await server.kill()
    assert len(server.log) > 3
    records = []
    for line in server.log:
        record = orjson.loads(line)
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "msg", "pid"} <= record.keys(), line
        records.append(record)
    assert any(r["msg"].startswith("listening on http://127.0.0.1:") for r in records)
    assert any(r["msg"] == "database schema is up to date" for r in records)
    everything = "".join(server.log)
    assert password not in everything
    assert JWT_SECRET not in everything
