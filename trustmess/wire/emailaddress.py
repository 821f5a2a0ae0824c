"""Email address syntax: what an account's ``email`` may be.

Deliberately narrower than RFC 5322, which allows quoted local parts, comments and IP-literal
domains no one types: an address is ``local@domain`` in ASCII, the local part a dot-atom of
at most 64 characters, the domain at least two labels of letters, digits and hyphens (the
punycode form of an internationalised domain), 254 characters in all (RFC 5321's path limit).
Each rule fails with its own message, so a client can say what is wrong.
"""

from __future__ import annotations

import re
from typing import Any

from trustmess.errors import invalid

EMAIL_MAX = 254
LOCAL_MAX = 64
LABEL_MAX = 63
# RFC 5322 atext: the characters of a dot-atom besides the dots.
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", re.ASCII)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", re.ASCII)


def check_email(name: str, value: Any) -> str:
    """``value`` as an email address (kept as typed), or 422 ``invalid`` naming ``name``."""
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if not value:
        raise invalid(name, "must not be empty")
    if len(value) > EMAIL_MAX:
        raise invalid(name, f"must be at most {EMAIL_MAX} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise invalid(name, "must not contain spaces or control characters")
    if not value.isascii():
        raise invalid(
            name, "must be ASCII (write an internationalised domain in its xn-- punycode form)"
        )
    if value.count("@") != 1:
        raise invalid(name, "must contain exactly one @")
    local, domain = value.split("@")
    if not local or not domain:
        raise invalid(name, "must have text before and after the @")
    if len(local) > LOCAL_MAX:
        raise invalid(name, f"must have at most {LOCAL_MAX} characters before the @")
    if not all(_ATEXT.fullmatch(part) for part in local.split(".")):
        raise invalid(
            name,
            "must have letters, digits and !#$%&'*+/=?^_`{|}~- before the @, with single dots "
            "between them",
        )
    labels = domain.split(".")
    if len(labels) < 2:
        raise invalid(name, "must have a domain with a dot (example.org)")
    if not all(len(label) <= LABEL_MAX and _LABEL.fullmatch(label) for label in labels):
        raise invalid(
            name,
            "must have a domain of dot-separated labels of letters, digits and inner hyphens",
        )
    if labels[-1].isdigit():
        raise invalid(name, "must have a domain name, not an IP address")
    return value
