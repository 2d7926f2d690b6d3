"""Redis edge of the per-user memory: pipelined reads/writes, bounded lists, TTL, and a degraded mode.

Each user's memory is a Redis list ``<prefix>:<user_id>`` of float32 records (see :mod:`engine.memory.model`),
trimmed to the last ``max_len`` and expiring ``ttl_s`` after the last write. Reads run under a short timeout:
if Redis is slow or down, :meth:`UserMemoryStore.get_many` returns ``None`` for every user (the decision is
served from the state without memory) and counts it in ``degraded_reads``; nothing raises, nothing blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import numpy as np

from engine.memory.model import MemoryView

log = logging.getLogger(__name__)


class UserMemoryStore:
    """Async per-user memory in Redis (``redis.asyncio``)."""

    def __init__(
        self,
        url: str,
        width: int,
        *,
        prefix: str = "abengine:mem",
        max_len: int = 32,
        ttl_s: int = 30 * 86400,
        timeout_s: float = 0.005,
        write_timeout_s: float = 0.5,
    ) -> None:
        import redis.asyncio as aioredis

        if width < 3 or max_len < 1 or ttl_s < 1 or timeout_s <= 0:
            raise ValueError("width >= 3, max_len >= 1, ttl_s >= 1 and timeout_s > 0 are required")
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=max(timeout_s, write_timeout_s), socket_connect_timeout=write_timeout_s
        )
        self.width = width
        self.prefix = prefix
        self.max_len = max_len
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s
        self.degraded_reads = 0
        self.failed_writes = 0
        self.reads = 0

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:{user_id}"

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, MemoryView | None]:
        """Each user's memory (None if empty/unknown, or for everyone in degraded mode); one round trip."""
        ids = list(user_ids)
        self.reads += 1
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for u in ids:
                    pipe.lrange(self.key(u), 0, -1)
                raw = await asyncio.wait_for(pipe.execute(), timeout=self.timeout_s)
        except (TimeoutError, OSError, ConnectionError, Exception) as e:
            self.degraded_reads += 1
            log.debug("memory read degraded: %s", e)
            return dict.fromkeys(ids)
        out: dict[str, MemoryView | None] = {}
        for u, items in zip(ids, raw, strict=True):
            if not items:
                out[u] = None
                continue
            recs = np.frombuffer(b"".join(items), dtype=np.float32).reshape(-1, self.width)
            out[u] = MemoryView(recs.copy())
        return out

    async def put_many(self, records: Mapping[str, np.ndarray]) -> bool:
        """Append records (n, width) per user, trim to ``max_len``, refresh TTL; False if Redis failed."""
        if not records:
            return True
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for u, rec in records.items():
                    rec = np.asarray(rec, dtype=np.float32).reshape(-1, self.width)
                    k = self.key(u)
                    pipe.rpush(k, *[r.tobytes() for r in rec])
                    pipe.ltrim(k, -self.max_len, -1)
                    pipe.expire(k, self.ttl_s)
                await asyncio.wait_for(pipe.execute(), timeout=self.write_timeout_s)
            return True
        except (TimeoutError, OSError, ConnectionError, Exception) as e:
            self.failed_writes += 1
            log.warning("memory write failed: %s", e)
            return False

    async def aclose(self) -> None:
        await self.client.aclose()
