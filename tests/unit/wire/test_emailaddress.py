"""check_email: the addresses people have are taken as typed; each broken rule is named."""

from __future__ import annotations

import pytest

from trustmess.errors import ApiError
from trustmess.wire.emailaddress import check_email


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.org",
        "Ada.Lovelace@Example.ORG",
        "o'brien+tag@mail.sub.example.co.uk",
        "x_y-z!#$%&*=?^`{|}~@example.org",
        "ada@xn--bcher-kva.example",
        "ada@123.example.org",
        "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + ".org",
    ],
)
def test_ordinary_addresses_are_kept_as_typed(address: str) -> None:
    assert check_email("email", address) == address


@pytest.mark.parametrize(
    "address",
    [
        "ada.@example.org",
        "ada@example.org.",
        "ada@exa_mple.org",
        "ada@example-.org",
        "ada@[1.2.3.4]",
    ],
)
def test_malformed_addresses_are_refused(address: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_email("email", address)
    assert caught.value.status == 422
    assert caught.value.field == "email"
