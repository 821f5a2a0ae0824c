"""The key of every per-address limit: who is asking, as far as limits are concerned.

One function, so that trusting a reverse proxy's forwarded address later changes one place.
IPv6 clients are keyed by their /64: one subscriber usually gets a whole /64, and counting each
of its 2^64 addresses apart would let one machine look like as many clients as it likes.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web


def client_key(request: web.Request) -> str:
    """The address key of the peer of ``request`` (``request.remote``; no header is trusted)."""
    return address_key(request.remote)


def address_key(address: str | None) -> str:
    """``a.b.c.d`` for IPv4 (and IPv4-mapped IPv6), ``prefix::/64`` for IPv6."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a Unix socket path): one key per peer name
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)
