"""trustmess.wire.validation: one field at a time, errors that name the field."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

import pytest

from trustmess.errors import ApiError, ErrorCode
from trustmess.wire.validation import (
    BIGINT_MAX,
    MAX_BODY_CHARS,
    check_fields,
    check_name,
    client_change_id,
    client_msg_id,
    get_bool,
    get_int,
    get_str,
    message_body,
    reaction,
    require_id_list,
    require_int,
    require_str,
)


def failure(call: Callable[[], object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def assert_invalid(call: Callable[[], object], field: str, message: str) -> None:
    error = failure(call)
    assert (error.status, error.code, error.field) == (422, ErrorCode.INVALID, field)
    assert error.message == f"{field}: {message}"


# ---------------------------------------------------------------- check_fields


@pytest.mark.parametrize("allowed", [{"a", "b"}, frozenset({"a", "b"}), ["a", "b"], ("a", "b")])
def test_check_fields_accepts_known_fields(allowed: Collection[str]) -> None:
    check_fields({"a": 1, "b": None}, allowed, ("a",))
    check_fields({}, allowed)


@pytest.mark.parametrize("allowed", [{"a", "b"}, frozenset({"a", "b"}), ["a", "b"]])
def test_check_fields_names_the_unknown_field(allowed: Collection[str]) -> None:
    assert_invalid(lambda: check_fields({"a": 1, "room": 2}, allowed), "room", "unknown field")


def test_check_fields_names_the_missing_required_field() -> None:
    assert_invalid(lambda: check_fields({"a": 1}, {"a", "b"}, ("a", "b")), "b", "is required")


def test_an_unknown_field_is_reported_before_a_missing_one() -> None:
    assert_invalid(lambda: check_fields({"x": 1}, {"a"}, ("a",)), "x", "unknown field")


def test_a_required_field_present_as_null_counts_as_present() -> None:
    # Null is then judged by the field's own reader (required → "is required" there too).
    check_fields({"a": None}, {"a"}, ("a",))


# ---------------------------------------------------------------- strings


def test_get_str_absent_is_none_or_the_default() -> None:
    assert get_str({}, "s", max_len=5) is None
    assert get_str({}, "s", max_len=5, default="start") == "start"
    assert get_str({"s": None}, "s", max_len=5, default="start") == "start"


def test_get_str_null_without_a_default_is_invalid() -> None:
    assert_invalid(lambda: get_str({"s": None}, "s", max_len=5), "s", "must be a string, not null")


@pytest.mark.parametrize("value", [1, True, ["a"], {"a": 1}, 1.5])
def test_get_str_rejects_non_strings(value: Any) -> None:
    assert_invalid(lambda: get_str({"s": value}, "s", max_len=5), "s", "must be a string")


def test_get_str_rejects_nul() -> None:
    message = "must not contain NUL characters"
    assert_invalid(lambda: get_str({"s": "a\x00"}, "s", max_len=5), "s", message)


def test_get_str_counts_code_points() -> None:
    assert get_str({"s": "🍜🍜🍜"}, "s", max_len=3) == "🍜🍜🍜"
    message = "must be at most 3 characters"
    assert_invalid(lambda: get_str({"s": "🍜🍜🍜🍜"}, "s", max_len=3), "s", message)


def test_get_str_length_bounds_are_inclusive() -> None:
    assert get_str({"s": "ab"}, "s", min_len=2, max_len=2) == "ab"
    message = "must be at least 2 characters"
    assert_invalid(lambda: get_str({"s": "a"}, "s", min_len=2, max_len=9), "s", message)


def test_get_str_strip_applies_before_the_length_check() -> None:
    assert get_str({"s": "  ab \n"}, "s", max_len=2, strip=True) == "ab"
    message = "must be at least 1 characters"
    assert_invalid(
        lambda: get_str({"s": "   "}, "s", min_len=1, max_len=9, strip=True), "s", message
    )
    assert get_str({"s": " ab "}, "s", max_len=9) == " ab "


def test_get_str_pattern_must_match_the_whole_value() -> None:
    pattern = re.compile(r"[a-z]+")
    assert get_str({"s": "abc"}, "s", max_len=9, pattern=pattern) == "abc"
    for value in ("abc1", "1abc", ""):
        message = "must match [a-z]+"
        assert_invalid(
            lambda v=value: get_str({"s": v}, "s", max_len=9, pattern=pattern), "s", message
        )


def test_require_str() -> None:
    assert require_str({"s": "x"}, "s", max_len=1) == "x"
    assert_invalid(lambda: require_str({}, "s", max_len=1), "s", "is required")
    assert_invalid(
        lambda: require_str({"s": None}, "s", max_len=1), "s", "must be a string, not null"
    )


# ---------------------------------------------------------------- integers and booleans


def test_get_int_absent_or_null_is_none() -> None:
    assert get_int({}, "n") is None
    assert get_int({"n": None}, "n") is None


@pytest.mark.parametrize("value", [True, False, 1.0, "1", [1]])
def test_get_int_rejects_what_is_not_a_json_integer(value: Any) -> None:
    assert_invalid(lambda: get_int({"n": value}, "n"), "n", "must be an integer")


def test_get_int_bounds_are_inclusive() -> None:
    assert get_int({"n": 1}, "n", lo=1, hi=3) == 1
    assert get_int({"n": 3}, "n", lo=1, hi=3) == 3
    assert get_int({"n": BIGINT_MAX}, "n") == BIGINT_MAX
    for value in (0, 4):
        assert_invalid(
            lambda v=value: get_int({"n": v}, "n", lo=1, hi=3), "n", "must be between 1 and 3"
        )
    message = f"must be between 0 and {BIGINT_MAX}"
    assert_invalid(lambda: get_int({"n": BIGINT_MAX + 1}, "n"), "n", message)
    assert_invalid(lambda: get_int({"n": -1}, "n"), "n", message)


def test_require_int() -> None:
    assert require_int({"n": 0}, "n") == 0
    assert_invalid(lambda: require_int({}, "n"), "n", "is required")
    assert_invalid(lambda: require_int({"n": None}, "n"), "n", "is required")


def test_get_bool() -> None:
    assert get_bool({}, "b") is None
    assert get_bool({"b": None}, "b") is None
    assert get_bool({"b": False}, "b") is False
    assert get_bool({"b": True}, "b") is True
    for value in (0, 1, "true"):
        assert_invalid(lambda v=value: get_bool({"b": v}, "b"), "b", "must be true or false")


# ---------------------------------------------------------------- id lists


def test_require_id_list_folds_duplicates_keeping_the_order() -> None:
    assert require_id_list({"ids": [3, 1, 3, 2, 1]}, "ids", max_items=5) == [3, 1, 2]


@pytest.mark.parametrize("value", [None, 1, "1,2", {"1": 2}])
def test_require_id_list_needs_a_list(value: Any) -> None:
    message = "must be a list of user ids"
    assert_invalid(lambda: require_id_list({"ids": value}, "ids", max_items=5), "ids", message)


def test_require_id_list_counts_items_before_folding() -> None:
    message = "must have at most 2 items"
    assert_invalid(lambda: require_id_list({"ids": [1, 1, 1]}, "ids", max_items=2), "ids", message)


@pytest.mark.parametrize("item", [0, -1, True, 1.0, "1", None, BIGINT_MAX + 1])
def test_require_id_list_items_are_positive_integers(item: Any) -> None:
    message = "must contain only positive integer ids"
    assert_invalid(lambda: require_id_list({"ids": [1, item]}, "ids", max_items=5), "ids", message)


# ---------------------------------------------------------------- message bodies


def test_message_body_is_stripped() -> None:
    assert message_body({"body": "\t hello world \n"}) == "hello world"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "is required"),
        (5, "must be a string"),
        (["hi"], "must be a string"),
        ("", "must not be empty or only whitespace"),
        (" \n\t\u3000 ", "must not be empty or only whitespace"),
        ("hi\x00", "must not contain NUL characters"),
    ],
)
def test_message_body_invalid(value: Any, message: str) -> None:
    assert_invalid(lambda: message_body({"body": value}), "body", message)
    assert_invalid(lambda: message_body({"text": value}, "text"), "text", message)


def test_message_body_absent_is_required() -> None:
    assert_invalid(lambda: message_body({}), "body", "is required")


def test_message_body_length_counts_code_points_after_stripping() -> None:
    longest = "🍜" * MAX_BODY_CHARS
    assert message_body({"body": f"  {longest}  "}) == longest
    error = failure(lambda: message_body({"body": longest + "x"}))
    assert (error.status, error.code, error.field) == (422, ErrorCode.TOO_LARGE, "body")
    assert error.message == f"body: must be at most {MAX_BODY_CHARS} characters"


# ---------------------------------------------------------------- client_msg_id


@pytest.mark.parametrize("value", ["a", "A-z_0", "x" * 64])
def test_client_msg_id_accepts_the_documented_alphabet(value: str) -> None:
    assert client_msg_id({"client_msg_id": value}) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must be at least 1 characters"),
        ("x" * 65, "must be at most 64 characters"),
        ("has space", "must match [A-Za-z0-9_-]{1,64}"),
        ("é", "must match [A-Za-z0-9_-]{1,64}"),
        ("abc\n", "must match [A-Za-z0-9_-]{1,64}"),
        ("a\x00", "must not contain NUL characters"),
        (7, "must be a string"),
        (None, "must be a string, not null"),
    ],
)
def test_client_msg_id_invalid(value: Any, message: str) -> None:
    assert_invalid(lambda: client_msg_id({"client_msg_id": value}), "client_msg_id", message)


def test_client_msg_id_absent_is_required() -> None:
    assert_invalid(lambda: client_msg_id({}), "client_msg_id", "is required")


# ---------------------------------------------------------------- text people read

# (text, what the message says) for names (display names, titles) that must be refused.
BAD_NAMES = [
    ("\u202eroot", "must not contain bidirectional formatting characters (U+202E)"),
    ("ad\u202dmin", "must not contain bidirectional formatting characters (U+202D)"),
    ("\u2066Ada\u2069", "must not contain bidirectional formatting characters (U+2066)"),
    ("\u202aAda\u202c", "must not contain bidirectional formatting characters (U+202A)"),
    ("\u200b", "must contain a visible character"),
    ("\u200d\u200c\u2060", "must contain a visible character"),
    ("\u3164", "must contain a visible character"),  # HANGUL FILLER
    ("\u0301\u0301", "must contain a visible character"),  # combining marks only
    ("\ufe0f", "must contain a visible character"),  # a variation selector alone
    ("ro\u200bot", "must not contain invisible spacing characters (U+200B)"),
    ("\x1b[31mred", "must not contain control characters (U+001B)"),
    ("two\nlines", "must not contain control characters (U+000A)"),
    ("tab\tbed", "must not contain control characters (U+0009)"),
    ("c1\x9bcontrol", "must not contain control characters (U+009B)"),
    ("line\u2028sep", "must not contain control characters (U+2028)"),
]
GOOD_NAMES = [
    "Ada Lovelace",
    "\U0001f469\u200d\U0001f4bb",  # woman technologist: a ZWJ sequence
    "\u2764\ufe0f",  # red heart with its emoji presentation selector
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # flag tags
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645",  # Persian with a ZWNJ
    "\u05e9\u05dc\u05d5\u05dd \u200fAda",  # Hebrew and an RLM mark
    "Zo\u00eb \ufdfd",
]


@pytest.mark.parametrize(("name", "message"), BAD_NAMES, ids=repr)
def test_names_refuse_controls_bidi_and_invisible_text(name: str, message: str) -> None:
    assert_invalid(lambda: check_name("display_name", name), "display_name", message)


@pytest.mark.parametrize("name", GOOD_NAMES, ids=repr)
def test_names_of_every_script_and_emoji_are_kept(name: str) -> None:
    check_name("title", name)


BAD_BODIES = [
    ("\x1b[2J\x1b[Hgotcha", "must not contain control characters (U+001B)"),
    ("bell\x07", "must not contain control characters (U+0007)"),
    ("over\rwrite", "must not contain control characters (U+000D)"),
    ("c1\x85next line", "must not contain control characters (U+0085)"),
    ("\x7fdelete", "must not contain control characters (U+007F)"),
    ("see gnp.\u202eexe", "must not contain bidirectional override characters (U+202E)"),
    ("\u202dforced", "must not contain bidirectional override characters (U+202D)"),
    ("open \u2067isolate", "must close every bidirectional embedding or isolate it opens"),
    ("open \u202bembedding", "must close every bidirectional embedding or isolate it opens"),
    # A PDF inside an isolate cannot close the embedding around it.
    ("\u202aa\u2066b\u202c", "must close every bidirectional embedding or isolate it opens"),
    ("\u200b", "must contain a visible character"),
    ("\u200b \u2060\n\ufeff", "must contain a visible character"),
]
GOOD_BODIES = [
    ("line one\nline two\tand a tab", "line one\nline two\tand a tab"),
    ("windows\r\nline ends\r\n", "windows\nline ends"),
    ("\U0001f468\u200d\U0001f469\u200d\U0001f467", None),  # family: ZWJ sequence
    ("\u05e9\u05dc\u05d5\u05dd \u2066(ltr)\u2069 end", None),  # a closed isolate
    ("\u202bnested \u2067inner\u2069\u202c", None),
    ("\u2067unclosed embedding closed by its isolate\u202b\u2069", None),
    ("stray closers \u202c\u2069 are harmless", None),
    ("\u2066a\u202ab\u2069\u202c", None),  # the PDI closes the embedding inside it too
    ("zero\u200bwidth inside text", None),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES, ids=repr)
def test_bodies_refuse_controls_overrides_and_open_bidi(body: str, message: str) -> None:
    assert_invalid(lambda: message_body({"body": body}), "body", message)


@pytest.mark.parametrize(("body", "stored"), GOOD_BODIES, ids=repr)
def test_bodies_keep_newlines_tabs_joiners_and_closed_isolates(
    body: str, stored: str | None
) -> None:
    assert message_body({"body": body}) == (body if stored is None else stored)


# ---------------------------------------------------------------- reactions, change ids


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("👍", "👍"),
        ("👍🏽", "👍🏽"),  # a skin tone
        ("👩‍💻", "👩‍💻"),  # a ZWJ sequence
        ("🇫🇷", "🇫🇷"),  # a flag
        ("❤️", "❤️"),
        ("❤", "❤️"),  # without its variation selector: stored fully-qualified
        ("1️⃣", "1️⃣"),
    ],
)
def test_a_reaction_is_one_rgi_emoji_stored_fully_qualified(value: str, stored: str) -> None:
    assert reaction(value) == stored


@pytest.mark.parametrize("value", ["", "a", "1", "👍👍", "👍 ", "🏽", ":+1:", "👍" * 20, "\x00"])
def test_anything_else_is_not_a_reaction(value: str) -> None:
    assert_invalid(lambda: reaction(value), "emoji", "must be a single emoji")


def test_a_reaction_must_be_a_string() -> None:
    assert_invalid(lambda: reaction(None), "emoji", "is required")
    assert_invalid(lambda: reaction(128077), "emoji", "must be a string")


def test_a_client_change_id_is_optional_and_shaped_like_a_client_msg_id() -> None:
    assert client_change_id({}) is None
    assert client_change_id({"client_change_id": "e-1_X"}) == "e-1_X"
    assert_invalid(
        lambda: client_change_id({"client_change_id": "has space"}),
        "client_change_id",
        "must match [A-Za-z0-9_-]{1,64}",
    )
