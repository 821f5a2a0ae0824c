"""Field validation shared by the HTTP views and the socket commands.

Each function reads one field of a decoded JSON object and raises an :class:`ApiError` with code
``invalid`` (or ``too_large``) naming the field, so both transports report the same errors.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from typing import Any

import emoji

from trustmess.errors import ApiError, ErrorCode, invalid

BIGINT_MAX = 2**63 - 1
CLIENT_MSG_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_BODY_CHARS = 4000
# What ``parse_decimal`` takes: int() also reads other scripts' digits ("\u0661" is 1),
# "+", "_" and surrounding whitespace, and thousands of digits.
_DECIMAL = re.compile(r"-?[0-9]{1,20}", re.ASCII)


def parse_decimal(raw: str) -> int | None:
    """An integer written in ASCII decimal digits (optional leading minus), else None."""
    return int(raw) if _DECIMAL.fullmatch(raw) else None


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
    # The hot path: isprintable() (one C loop) rules out every control, format and separator
    # character at once, and most bodies start with a letter or digit. The rest is checked in
    # full.
    if not stripped.isprintable():
        stripped = check_text(name, stripped)
    first = stripped[0]
    if not (first.isalnum() and first not in _BLANK_CHARACTERS) and not _has_visible(stripped):
        raise invalid(name, "must contain a visible character")
    if len(stripped) > MAX_BODY_CHARS:
        raise ApiError(
            422,
            ErrorCode.TOO_LARGE,
            f"{name}: must be at most {MAX_BODY_CHARS} characters",
            field=name,
        )
    return stripped


# ---------------------------------------------------------------- text people read
#
# What reaches other people's screens must not be able to hide itself or rewrite what is around
# it. Names (display names, conversation titles: one line shown beside other text) refuse every
# control character (C0, C1, U+2028/2029), every bidirectional formatting character and the
# zero-width spacers, and need one visible character. Bodies and bios keep tab and line feed
# (a CR LF pair is stored as LF), refuse the other controls and the bidi overrides (which make
# "gnp.exe" look like "exe.png"), and may use embeddings and isolates only when they close them,
# so none leaks into the surrounding interface. Joiners (ZWJ in emoji, ZWNJ in Persian) and
# variation selectors are kept everywhere.

# Everything a body could be refused for (a one-pass scan that finds nothing in most bodies).
_TEXT_SUSPECTS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAME_SUSPECTS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b\u2060\ufeff]"
)
_BIDI_OVERRIDES = "\u202d\u202e"
_BIDI_FORMATTING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ZERO_WIDTH_SPACERS = frozenset("\u200b\u2060\ufeff")
# Categories that draw nothing by themselves: formats, marks, separators, controls.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp"})
# Letters and symbols that render blank (Hangul fillers, the blank braille pattern).
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def _has_visible(value: str) -> bool:
    category = unicodedata.category
    return any(
        char not in _BLANK_CHARACTERS and category(char) not in _INVISIBLE_CATEGORIES
        for char in value
    )


def _bidi_closed(value: str) -> bool:
    """Whether every embedding (U+202A/B, closed by U+202C) and isolate (U+2066-2068, closed by
    U+2069) the text opens is closed again; a closer with nothing to close is ignored (UAX #9)."""
    open_: list[str] = []
    for char in value:
        if char in "\u202a\u202b":
            open_.append("embedding")
        elif char == "\u202c":
            if open_ and open_[-1] == "embedding":
                open_.pop()
        elif char in "\u2066\u2067\u2068":
            open_.append("isolate")
        elif char == "\u2069" and "isolate" in open_:
            # A PDI also closes the embeddings opened inside its isolate.
            while open_.pop() != "isolate":
                pass
    return not open_


def check_name(name: str, value: str) -> None:
    """A display name or title (already stripped): 422 naming ``name`` for a control, bidi or
    zero-width spacing character, or when nothing in it is visible."""
    if not _has_visible(value):
        raise invalid(name, "must contain a visible character")
    found = _NAME_SUSPECTS.search(value)
    if found is not None:
        char = found.group()
        if char in _BIDI_FORMATTING:
            what = "bidirectional formatting characters"
        elif char in _ZERO_WIDTH_SPACERS:
            what = "invisible spacing characters"
        else:
            what = "control characters"
        raise invalid(name, f"must not contain {what} ({_code_point(char)})")


def check_text(name: str, value: str) -> str:
    """A body or bio: the text with CR LF stored as LF; 422 naming ``name`` for a control other
    than tab and line feed, a bidi override, or an embedding or isolate left open."""
    if _TEXT_SUSPECTS.search(value) is None:
        return value
    if "\r\n" in value:
        value = value.replace("\r\n", "\n")
    bidi = False
    for char in _TEXT_SUSPECTS.findall(value):
        if char in _BIDI_OVERRIDES:
            raise invalid(
                name, f"must not contain bidirectional override characters ({_code_point(char)})"
            )
        if char not in _BIDI_FORMATTING:
            raise invalid(name, f"must not contain control characters ({_code_point(char)})")
        bidi = True
    if bidi and not _bidi_closed(value):
        raise invalid(name, "must close every bidirectional embedding or isolate it opens")
    return value


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
