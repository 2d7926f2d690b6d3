"""Policy snapshots in Redis: written by the learner that owns an experiment,
read by every worker that serves it.

A snapshot is stored with the reward-stream cursor it reflects; recovery
restores it and replays the stream after the cursor, so a restart or a
partition move neither loses nor repeats a reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis

from engine.store.keys import Keys
from engine.store.ledger import stream_id_key


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    snapshot: dict[str, Any]
    cursor: str


class PolicyStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        script = resources.files("engine.store").joinpath("save_policy.lua").read_text()
        self._save = redis.register_script(script)

    async def save(self, experiment_id: str, snapshot: dict[str, Any], cursor: str) -> bool:
        """Store ``snapshot`` at ``cursor``; False when a newer snapshot is already there."""
        ms, seq = stream_id_key(cursor)
        ok = await self._save(
            keys=[self.keys.policy(experiment_id), self.keys.policy_versions],
            args=[experiment_id, ms, seq, orjson.dumps(snapshot), snapshot.get("version", 0)],
        )
        return bool(ok)

    async def load(self, experiment_id: str) -> StoredPolicy | None:
        raw = await self.redis.hmget(self.keys.policy(experiment_id), "snapshot", "cursor_ms", "cursor_seq")
        if raw[0] is None:
            return None
        return StoredPolicy(orjson.loads(raw[0]), f"{int(raw[1])}-{int(raw[2])}")

    async def versions(self) -> dict[str, int]:
        """Save counter per experiment: serving workers reload a policy when it moves."""
        raw = await self.redis.hgetall(self.keys.policy_versions)
        return {k.decode(): int(v) for k, v in raw.items()}
