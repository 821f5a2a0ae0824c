"""The client address behind proxies: which hop of a forwarding chain is believed."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from trustmess.http.clientaddr import client_from_chain, parse_hop

PROXIES = (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
EDGE = ip_address("10.0.0.2")  # the trusted proxy that connected to us


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ('"203.0.113.7:4711"', "203.0.113.7"),
        ("2001:db8::17", "2001:db8::17"),
        ("[2001:db8::17]", "2001:db8::17"),
        ('"[2001:db8::17]:4711"', "2001:db8::17"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4 on a dual-stack socket
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("[2001:db8::17", None),
        ("example.org", None),
        ("203.0.113.7:80:90", None),
    ],
)
def test_parse_hop(raw, parsed) -> None:
    found = parse_hop(raw)
    assert (None if found is None else str(found)) == parsed


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        # The client, then our own proxies: the client.
        (["203.0.113.7", "10.0.0.9"], "203.0.113.7"),
        # Whatever the client wrote on the left is not believed.
        (["1.1.1.1", "203.0.113.7"], "203.0.113.7"),
        (["1.1.1.1", "203.0.113.7", "10.0.0.9", "10.1.2.3"], "203.0.113.7"),
        # Nothing forwarded: the proxy itself.
        ([], "10.0.0.2"),
        # Only our proxies: the leftmost of them.
        (["10.0.0.5", "10.0.0.9"], "10.0.0.5"),
        # A hop that is no address: the last trusted proxy is the best we know.
        (["203.0.113.7", "unknown"], "10.0.0.2"),
        (["203.0.113.7", "unknown", "10.0.0.9"], "10.0.0.9"),
        # IPv6 clients and proxies.
        (["2001:db8::17", "fd00::1"], "2001:db8::17"),
        (["[2001:db8::17]:4711"], "2001:db8::17"),
    ],
)
def test_client_is_the_rightmost_untrusted_hop(chain, client) -> None:
    assert str(client_from_chain(EDGE, chain, PROXIES)) == client
