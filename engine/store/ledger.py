"""The reward ledger: join events to decisions exactly once, in Redis.

Kafka delivers at least once (a crash or a rebalance replays records); the
ledger makes that harmless. Each batch of one experiment's events runs as one
Lua script (atomic): an event joins its decision, is deduplicated by
``event_id``, checked against the attribution window, and its rewards are
appended to the experiment's reward stream. Learners read only that stream, so
every applied event reaches a learner exactly once, whichever worker consumed it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import orjson
from redis.asyncio import Redis

from engine.store.keys import Keys
from engine.types import Reward, RewardKind
from schemas import DecisionLog, EventBase

EventOutcome = Literal["applied", "duplicate", "repeat", "late", "pending", "unmatched"]

#: Conversions credited per decision at most; more are recorded as repeats (poison guard).
MAX_CONVERSIONS_PER_DECISION = 16


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """A reward from the stream with its id (the learner's cursor)."""

    id: str
    reward: Reward


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """Order of Redis stream ids ("ms-seq")."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class RewardLedger:
    """Decision records, the join/dedupe script, and the per-experiment reward streams."""

    def __init__(self, redis: Redis, keys: Keys, *, stream_maxlen: int, grace_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self.grace_ms = int(grace_s * 1000)
        script = resources.files("engine.store").joinpath("apply_events.lua").read_text()
        self._apply = redis.register_script(script)

    async def record_decisions(self, decisions: Sequence[DecisionLog], ttl_s: Mapping[str, float]) -> None:
        """Store decisions so later events can join them (one pipeline per batch; idempotent)."""
        if not decisions:
            return
        pipe = self.redis.pipeline(transaction=False)
        for d in decisions:
            key = self.keys.decision(d.experiment_id, d.decision_id)
            extra = orjson.dumps({"attributes": d.attributes, "context": d.context, "features": d.features})
            pipe.hset(key, mapping={
                "id": d.decision_id,
                "v": d.variant_id,
                "u": d.user_id,
                "t": int(d.timestamp.timestamp() * 1000),
                "p": repr(d.propensity),
                "a": d.allocator,
                "m": d.model_version,
                "x": extra,
            })
            # keep the record past the window so late events are classified late, not unmatched
            pipe.pexpire(key, int((2 * ttl_s.get(d.experiment_id, 86400.0) + 3600) * 1000))
        await pipe.execute()

    async def apply_events(
        self,
        experiment_id: str,
        events: Sequence[tuple[EventBase, bytes]],
        window_s: float,
        now: float | None = None,
    ) -> list[EventOutcome]:
        """Join one experiment's events (model, raw bytes) atomically; one outcome per event."""
        if not events:
            return []
        now_ms = int((now if now is not None else time.time()) * 1000)
        keys = [self.keys.ledger(experiment_id), self.keys.rewards(experiment_id), self.keys.pending(experiment_id)]
        args: list[Any] = [now_ms, int(window_s * 1000), self.stream_maxlen, MAX_CONVERSIONS_PER_DECISION,
                           self.grace_ms]
        for event, raw in events:
            keys.append(self.keys.decision(experiment_id, event.decision_id))
            value = getattr(event, "value", 0.0)
            args += [event.event_id, event.type, repr(float(value)),  # type: ignore[attr-defined]
                     int(event.event_time.timestamp() * 1000), event.type.encode() + b"\n" + raw]
        result = await self._apply(keys=keys, args=args)
        outcomes = [r.decode() if isinstance(r, bytes) else str(r) for r in result]
        if "pending" in outcomes:
            await self.redis.sadd(self.keys.pending_index, experiment_id)
        return outcomes  # type: ignore[return-value]

    async def pending(self, experiment_id: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        """(event type, raw event) of ``experiment_id`` still waiting for their decision, oldest first."""
        members = await self.redis.zrange(self.keys.pending(experiment_id), 0, limit - 1)
        out = []
        for m in members:
            kind, _, raw = m.partition(b"\n")
            out.append((kind.decode(), raw))
        return out

    async def experiments_with_pending(self) -> list[str]:
        members = await self.redis.smembers(self.keys.pending_index)
        return sorted(m.decode() for m in members)

    async def clear_pending_index(self, experiment_id: str) -> None:
        """Forget ``experiment_id`` in the pending index once its zset is empty."""
        if await self.redis.zcard(self.keys.pending(experiment_id)) == 0:
            await self.redis.srem(self.keys.pending_index, experiment_id)

    async def counters(self, experiment_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.ledger(experiment_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    async def read_rewards(self, experiment_id: str, after: str = "0-0", count: int = 2000) -> list[StreamEntry]:
        """Rewards appended after stream id ``after`` (exclusive), oldest first."""
        rows = await self.redis.xrange(self.keys.rewards(experiment_id), min=f"({after}", max="+", count=count)
        return [StreamEntry(sid.decode(), _reward(experiment_id, fields)) for sid, fields in rows]


def _reward(experiment_id: str, f: Mapping[bytes, bytes]) -> Reward:
    extra = orjson.loads(f[b"x"]) if f.get(b"x") else {}
    kind: RewardKind = f[b"k"].decode()  # type: ignore[assignment]
    return Reward(
        decision_id=f[b"d"].decode(),
        experiment_id=experiment_id,
        variant_id=f[b"v"].decode(),
        user_id=f[b"u"].decode(),
        kind=kind,
        value=float(f[b"val"]),
        propensity=float(f[b"p"]),
        allocator=f[b"a"].decode(),
        model_version=int(f[b"m"]),
        decided_at=int(f[b"t"]) / 1000.0,
        event_time=int(f[b"et"]) / 1000.0,
        attributes=extra.get("attributes") or {},
        context_text=extra.get("context"),
        features=extra.get("features") or {},
    )
