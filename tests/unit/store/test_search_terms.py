"""trustmess.store.search: the words of a query and the tsquery built from them."""

from __future__ import annotations

import pytest

from trustmess.store.search import MAX_TERM_CHARS, MAX_TERMS, search_terms, tsquery


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("Lunch at NOON?", ["lunch", "at", "noon"]),
        ("e-mail & 'quotes' | !not :*", ["e", "mail", "quotes", "not"]),
        ("snake_case", ["snake", "case"]),
        ("Größe café 東京", ["größe", "café", "東京"]),
        ("  ,;!  ", []),
    ],
)
def test_words_are_letters_and_digits_lower_cased(text: str, terms: list[str]) -> None:
    assert search_terms(text) == terms


def test_words_are_bounded_in_number_and_length() -> None:
    assert len(search_terms(" ".join(f"w{n}" for n in range(20)))) == MAX_TERMS
    assert search_terms("x" * 100) == ["x" * MAX_TERM_CHARS]


def test_every_word_must_match_whole() -> None:
    # Nothing of tsquery's syntax (&, |, !, :*, quotes) can survive search_terms.
    assert tsquery(search_terms("lunch: noon|!")) == "lunch & noon"
