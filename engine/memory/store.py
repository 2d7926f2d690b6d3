"""Redis edge of the per-user memory: coalesced reads, bounded appends, TTL, and a degraded mode.

Each user's memory is a Redis string ``<prefix>:<user_id>`` of concatenated float32 records (see
:mod:`engine.memory.model`), trimmed to the last ``max_len`` records and expiring ``ttl_s`` after the
last write (``append_records.lua``). Reads run under a short timeout: if Redis is slow or down,
:meth:`UserMemoryStore.get_many` returns ``None`` for every user (the decision is served from the state
without memory) and counts it in ``degraded_reads``; nothing raises, nothing blocks.

The decide path reads one user at a time through :meth:`UserMemoryStore.get`, which coalesces the reads of
concurrent requests: while one read is in flight, the users asked for meanwhile wait for the next one, one
``MGET`` for all of them, so under load one round trip serves many decisions and at low load a read goes
out at once. CPU per read: ``bench/bench_memory_reads.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from importlib import resources

import numpy as np

from engine.memory.model import MemoryView

log = logging.getLogger(__name__)


class _Degraded(Exception):
    """The coalesced read this waiter was part of failed (already counted once for the batch)."""


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
        #: users waiting for the next coalesced read, and the task serving them (None when idle)
        self._waiting: dict[str, list[asyncio.Future[MemoryView | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._warned_degraded = False
        self._append = self.client.register_script(
            resources.files("engine.memory").joinpath("append_records.lua").read_text()
        )

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:{user_id}"

    async def get(self, user_id: str) -> tuple[MemoryView | None, bool]:
        """One user's memory for a decision, and whether the read degraded (Redis slow or down).

        Waits at most ``timeout_s`` from the call, whatever the other readers do.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[MemoryView | None] = loop.create_future()
        self._waiting.setdefault(user_id, []).append(fut)
        if self._reader is None:
            self._reader = loop.create_task(self._read_waiting())
        try:
            async with asyncio.timeout(self.timeout_s):
                return await fut, False  # a time-out cancels fut: the reader then skips it
        except TimeoutError:
            self.degraded_reads += 1
            return None, True
        except _Degraded:  # the round this read was in failed (counted once for the round)
            return None, True

    async def _read_waiting(self) -> None:
        """Serve the waiting users with one pipeline per round, until nobody waits."""
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, {}
                got = await self._read(list(waiting))
                for u, futs in waiting.items():
                    for f in futs:
                        if f.done():
                            continue
                        if got is None:
                            f.set_exception(_Degraded())
                        else:
                            f.set_result(got[u])
        finally:
            self._reader = None

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, MemoryView | None]:
        """Each user's memory (None if empty/unknown, or for everyone in degraded mode); one round trip."""
        ids = list(user_ids)
        got = await self._read(ids)
        return dict.fromkeys(ids) if got is None else got

    async def _read(self, ids: list[str]) -> dict[str, MemoryView | None] | None:
        """One ``MGET`` under ``timeout_s``; None when it degraded (counted, warned once)."""
        self.reads += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.client.mget([self.key(u) for u in ids])
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
        """Append records (n, width) per user, trim to ``max_len``, refresh TTL; False if Redis failed."""
        if not records:
            return True
        keys, blobs = [], []
        for u, rec in records.items():
            keys.append(self.key(u))
            blobs.append(np.ascontiguousarray(rec, dtype=np.float32).reshape(-1, self.width).tobytes())
        try:
            max_bytes = self.max_len * self.width * 4
            await asyncio.wait_for(
                self._append(keys=keys, args=[max_bytes, self.ttl_s, *blobs]), timeout=self.write_timeout_s
            )
            return True
        except (TimeoutError, OSError, ConnectionError, Exception) as e:
            self.failed_writes += 1
            log.warning("memory write failed: %s", e)
            return False

    async def aclose(self) -> None:
        if self._reader is not None:  # waiters still in it get their time-out (served without memory)
            self._reader.cancel()
        await self.client.aclose()
