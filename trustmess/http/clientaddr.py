"""Who the client is on the network: the one place every rate limit and the access log ask.

Without ``TRUSTMESS_TRUSTED_PROXIES`` it is the TCP peer, and forwarding headers are ignored
(anyone can write them). When the peer is a trusted proxy, the client is taken from the
forwarding chain, ``Forwarded`` (RFC 7239) if the request has one, else ``X-Forwarded-For``:
walking from the right (the hop nearest to us), the first address that is not itself a trusted
proxy. Every address left of it was written by the client or proxies we do not trust, so it is
never used. A hop that is not an address (``unknown``, an obfuscated ``_name``) stops the walk:
the last trusted proxy is then the best we know.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

from aiohttp import web

from trustmess.appkeys import SETTINGS
from trustmess.settings import Network

Address = IPv4Address | IPv6Address

UNKNOWN = "unknown"


def client_address(request: web.Request) -> str:
    """The client's IP address as text (``unknown`` without one, as on a Unix socket).

    Not cached on the request: it is asked once or twice per request, and costs microseconds.
    """
    found = _find(request)
    return UNKNOWN if found is None else str(found)


def client_key(request: web.Request) -> str:
    """What rate limits count by: the address, or an IPv6 client's /64 (one customer's
    network: an IPv6 host can pick any address in it)."""
    address = client_address(request)
    if ":" in address:
        return str(IPv6Network(f"{address}/64", strict=False))
    return address


def parse_hop(raw: str) -> Address | None:
    """An address as forwarding headers write it: ``1.2.3.4``, ``1.2.3.4:567``, ``2001:db8::1``,
    ``[2001:db8::1]:567``; None for anything else."""
    raw = raw.strip().strip('"')
    if raw.startswith("["):
        raw = raw[1 : raw.find("]")] if "]" in raw else ""
    elif raw.count(":") == 1:
        raw = raw.split(":", 1)[0]
    try:
        return _unmapped(ip_address(raw))
    except ValueError:
        return None


def _unmapped(address: Address) -> Address:
    """``::ffff:1.2.3.4`` (an IPv4 client on a dual-stack socket) as ``1.2.3.4``."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _find(request: web.Request) -> Address | None:
    peer = parse_hop(request.remote or "")
    trusted = request.app[SETTINGS].trusted_proxies
    if peer is None or not _is_trusted(peer, trusted):
        return peer
    return client_from_chain(peer, _forwarded_chain(request), trusted)


def client_from_chain(peer: Address, chain: list[str], trusted: Iterable[Network]) -> Address:
    """The rightmost hop of ``chain`` (left: the original client) that is not a trusted proxy;
    ``peer`` is the trusted proxy that connected to us."""
    nearest = peer
    for raw in reversed(chain):
        hop = parse_hop(raw)
        if hop is None:
            return nearest
        if not _is_trusted(hop, trusted):
            return hop
        nearest = hop
    return nearest


def _forwarded_chain(request: web.Request) -> list[str]:
    """The ``for`` addresses of ``Forwarded``, else of ``X-Forwarded-For``, left to right."""
    if "Forwarded" in request.headers:
        return [element["for"] for element in request.forwarded if "for" in element]
    return [
        hop
        for header in request.headers.getall("X-Forwarded-For", ())
        for hop in header.split(",")
        if hop.strip()
    ]


def _is_trusted(address: Address, trusted: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)
