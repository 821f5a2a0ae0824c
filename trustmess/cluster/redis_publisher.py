"""The bus's sending side: PUBLISH over a plain Redis connection, a batch per write (see
redis_link.py for why not a redis-py pipeline)."""

from __future__ import annotations

from collections.abc import Iterable

from trustmess.cluster.redis_link import RespLink


class BusPublisher(RespLink):
    """Publishes batches: one write of every command, one future for all their replies."""

    async def publish_many(self, messages: Iterable[tuple[str, bytes]]) -> None:
        """PUBLISH each ``(channel, data)``; raises BusLinkError if the connection fails or
        Redis refuses one (then any of them may or may not have gone out)."""
        parts: list[bytes] = []
        count = 0
        for channel, data in messages:
            name = channel.encode()
            parts.append(
                b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(name), name, len(data))
            )
            parts.append(data)
            parts.append(b"\r\n")
            count += 1
        if count:
            await self.request(b"".join(parts), count)
