"""Redis edge of the per-user memory: coalesced reads, bounded appends, TTL, and a degraded mode.

Each user's memory is a Redis string ``<prefix>:<user_id>`` of concatenated float32 records (see
:mod:`engine.memory.model`), trimmed to the last ``max_len`` records and expiring ``ttl_s`` after the
last write (``append_records.lua``). Reads run under a short timeout: if Redis is slow or down,
:meth:`UserMemoryStore.get_many` returns ``None`` for every user (the decision is served from the state
without memory) and counts it in ``degraded_reads``; nothing raises, nothing blocks.

The decide path reads the memories of many concurrent decisions with one :meth:`UserMemoryStore.read`
(one ``MGET``; the rounds of :mod:`engine.rounds`) on a pipelined connection of its own
(:mod:`engine.store.pipelined`: a seventh of redis-py's CPU per command, and a read that misses its
deadline leaves the connection up); writes go through ``redis.asyncio``. CPU per read:
``bench/bench_memory_reads.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from importlib import resources

import numpy as np

from engine.config import REDIS_SCRIPT_ITEMS
from engine.memory.model import RECORD_FORMAT, MemoryView
from engine.store.pipelined import PipelinedConnection

log = logging.getLogger(__name__)


class UserMemoryStore:
    """Async per-user memory in Redis (``redis.asyncio``)."""

    def __init__(
        self,
        url: str,
        width: int,
        *,
        prefix: str = f"abengine:mem{RECORD_FORMAT}",  # the runtime passes Keys.memory(...)
        max_len: int = 32,
        ttl_s: int = 30 * 86400,
        timeout_s: float = 0.005,
        write_timeout_s: float = 0.5,
        script_items: int = REDIS_SCRIPT_ITEMS,
    ) -> None:
        import redis.asyncio as aioredis

        if width < 3 or max_len < 1 or ttl_s < 1 or timeout_s <= 0 or script_items < 1:
            raise ValueError(
                "width >= 3, max_len >= 1, ttl_s >= 1, timeout_s > 0 and script_items >= 1 are required"
            )
        self.script_items = script_items
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=max(timeout_s, write_timeout_s), socket_connect_timeout=write_timeout_s
        )
        self.reads_connection = PipelinedConnection(url, connect_timeout_s=write_timeout_s)
        self.width = width
        self.prefix = prefix
        self.max_len = max_len
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.write_timeout_s = write_timeout_s
        self.degraded_reads = 0
        self.failed_writes = 0
        self.reads = 0
        self._warned_degraded = False
        self._append = self.client.register_script(
            resources.files("engine.memory").joinpath("append_records.lua").read_text()
        )

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:{user_id}"

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, MemoryView | None]:
        """Each user's memory (None if empty/unknown, or for everyone in degraded mode); one round trip."""
        ids = list(user_ids)
        got = await self.read(ids)
        return dict.fromkeys(ids) if got is None else got

    async def read(self, ids: list[str]) -> dict[str, MemoryView | None] | None:
        """One ``MGET`` under ``timeout_s``; None when it degraded (counted, warned once) — the decide
        path's rounds (:mod:`engine.rounds`) call this to tell a degraded read from empty memories."""
        self.reads += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.reads_connection.call("MGET", *[self.key(u) for u in ids])
        except Exception as e:  # slow, down or refusing: serve without memory, count it, never raise
            self.degraded_reads += 1
            if not self._warned_degraded:  # once per outage, not per read (the metric counts reads)
                log.warning("memory reads degraded (served without memory): %r", e)
                self._warned_degraded = True
            return None
        self._warned_degraded = False
        width, record_bytes = self.width, self.width * 4
        return {
            # read-only views of the reply's bytes (memories are never written in place); a value that is
            # not whole records (not written by this store's width) reads as no memory
            u: MemoryView(np.frombuffer(blob, dtype=np.float32).reshape(-1, width))
            if blob and len(blob) % record_bytes == 0
            else None
            for u, blob in zip(ids, raw, strict=True)
        }

    async def put_many(self, records: Mapping[str, np.ndarray]) -> bool:
        """Append records (n, width) per user, trim to ``max_len``, refresh TTL; False if Redis failed.
        One script call per ``script_items`` users, one after another: Redis serves reads between them."""
        if not records:
            return True
        keys, blobs = [], []
        for u, rec in records.items():
            keys.append(self.key(u))
            blobs.append(np.ascontiguousarray(rec, dtype=np.float32).reshape(-1, self.width).tobytes())
        max_bytes, k = self.max_len * self.width * 4, self.script_items
        try:
            async with asyncio.timeout(self.write_timeout_s):
                for i in range(0, len(keys), k):
                    await self._append(keys=keys[i : i + k], args=[max_bytes, self.ttl_s, *blobs[i : i + k]])
            return True
        except (TimeoutError, OSError, ConnectionError, Exception) as e:
            self.failed_writes += 1
            log.warning("memory write failed: %s", e)
            return False

    async def aclose(self) -> None:
        await self.reads_connection.aclose()
        await self.client.aclose()
