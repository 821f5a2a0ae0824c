"""Field validation shared by the HTTP views and the socket commands.

Each function reads one field of a decoded JSON object and raises an :class:`ApiError` with code
``invalid`` (or ``too_large``) naming the field, so both transports report the same errors.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import emoji

from trustmess.errors import ApiError, ErrorCode, invalid

BIGINT_MAX = 2**63 - 1
CLIENT_MSG_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_BODY_CHARS = 4000
MAX_REACTIONS_PER_MESSAGE = 20  # distinct emoji on one message


def check_fields(
    data: Mapping[str, Any], allowed: Collection[str], required: Collection[str] = ()
) -> None:
    """Reject unknown fields and missing required ones."""
    # With a set, the common case (nothing unknown) is one comparison done in C.
    if not (isinstance(allowed, set | frozenset) and data.keys() <= allowed):
        for name in data:
            if name not in allowed:
                raise invalid(name, "unknown field")
    for name in required:
        if name not in data:
            raise invalid(name, "is required")


def get_str(
    data: Mapping[str, Any],
    name: str,
    *,
    min_len: int = 0,
    max_len: int,
    strip: bool = False,
    pattern: re.Pattern[str] | None = None,
    default: str | None = None,
) -> str | None:
    """A string field; None (or ``default``) when absent. Length is counted in characters."""
    value = data.get(name)
    if value is None:
        if name in data and default is None:
            raise invalid(name, "must be a string, not null")
        return default
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if "\x00" in value:
        raise invalid(name, "must not contain NUL characters")
    if strip:
        value = value.strip()
    if len(value) < min_len:
        raise invalid(name, f"must be at least {min_len} characters")
    if len(value) > max_len:
        raise invalid(name, f"must be at most {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise invalid(name, f"must match {pattern.pattern}")
    return value


def require_str(data: Mapping[str, Any], name: str, **kwargs: Any) -> str:
    value = get_str(data, name, **kwargs)
    if value is None:
        raise invalid(name, "is required")
    return value


def get_int(data: Mapping[str, Any], name: str, *, lo: int = 0, hi: int = BIGINT_MAX) -> int | None:
    """An integer field (booleans are not integers); None when absent or null."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, "must be an integer")
    if not lo <= value <= hi:
        raise invalid(name, f"must be between {lo} and {hi}")
    return value


def require_int(data: Mapping[str, Any], name: str, *, lo: int = 0, hi: int = BIGINT_MAX) -> int:
    value = get_int(data, name, lo=lo, hi=hi)
    if value is None:
        raise invalid(name, "is required")
    return value


def get_bool(data: Mapping[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid(name, "must be true or false")
    return value


def require_id_list(data: Mapping[str, Any], name: str, *, max_items: int) -> list[int]:
    """A non-empty list of distinct positive ids (duplicates are folded)."""
    value = data.get(name)
    if not isinstance(value, list):
        raise invalid(name, "must be a list of user ids")
    if len(value) > max_items:
        raise invalid(name, f"must have at most {max_items} items")
    ids: list[int] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= BIGINT_MAX:
            raise invalid(name, "must contain only positive integer ids")
        if item not in ids:
            ids.append(item)
    return ids


def message_body(data: Mapping[str, Any], name: str = "body") -> str:
    """A message body: 1-4000 characters after stripping, not only whitespace.

    Over-long bodies are ``too_large`` (the socket protocol names that case on its own).
    """
    value = data.get(name)
    if value is None:
        raise invalid(name, "is required")
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if "\x00" in value:
        raise invalid(name, "must not contain NUL characters")
    stripped = value.strip()
    if not stripped:
        raise invalid(name, "must not be empty or only whitespace")
    if len(stripped) > MAX_BODY_CHARS:
        raise ApiError(
            422,
            ErrorCode.TOO_LARGE,
            f"{name}: must be at most {MAX_BODY_CHARS} characters",
            field=name,
        )
    return stripped


def client_msg_id(data: Mapping[str, Any], name: str = "client_msg_id") -> str:
    value = data.get(name)
    if type(value) is str and CLIENT_MSG_ID.fullmatch(value):
        return value  # the common case; the pattern bounds the length and excludes NUL
    return require_str(data, name, min_len=1, max_len=64, pattern=CLIENT_MSG_ID)


def client_change_id(data: Mapping[str, Any], name: str = "client_change_id") -> str | None:
    """Optional: the client's id for an edit, delete or reaction, as for ``client_msg_id``."""
    return get_str(data, name, min_len=1, max_len=64, pattern=CLIENT_MSG_ID)


# Every fully-qualified emoji of Unicode's emoji-test.txt (the RGI set the ``emoji`` package
# ships), keyed by its form without variation selectors: "❤" and "❤️" are one reaction.
_REACTIONS = {
    text.replace("\ufe0f", ""): text
    for text, info in emoji.EMOJI_DATA.items()
    if info["status"] == emoji.STATUS["fully_qualified"]
}
MAX_EMOJI_CHARS = 16


def reaction(value: Any, name: str = "emoji") -> str:
    """A reaction: exactly one RGI emoji (skin tones and ZWJ sequences included), returned in
    its fully-qualified form."""
    if value is None:
        raise invalid(name, "is required")
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    found = _REACTIONS.get(value.replace("\ufe0f", "")) if len(value) <= MAX_EMOJI_CHARS else None
    if found is None:
        raise invalid(name, "must be a single emoji")
    return found
