"""The experiment registry, persisted in Redis so a restart keeps experiments.

Every worker keeps an in-memory copy (:class:`engine.state.RegistryCache`) and
reloads it when the revision counter moves, so the decide path never reads Redis.
"""

from __future__ import annotations

from redis.asyncio import Redis

from engine.store.keys import Keys
from schemas import Experiment


class ExperimentExists(Exception):
    """An experiment with this id is already registered."""


class ExperimentStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, experiment: Experiment) -> None:
        """Register a new experiment (ExperimentExists if the id is taken)."""
        created = await self.redis.hsetnx(self.keys.experiments, experiment.id, experiment.model_dump_json())
        if not created:
            raise ExperimentExists(experiment.id)
        await self.redis.incr(self.keys.experiments_rev)

    async def put(self, experiment: Experiment) -> None:
        """Replace an experiment (status change, new variant)."""
        await self.redis.hset(self.keys.experiments, experiment.id, experiment.model_dump_json())
        await self.redis.incr(self.keys.experiments_rev)

    async def get(self, experiment_id: str) -> Experiment | None:
        raw = await self.redis.hget(self.keys.experiments, experiment_id)
        return Experiment.model_validate_json(raw) if raw else None

    async def revision(self) -> int:
        return int(await self.redis.get(self.keys.experiments_rev) or 0)

    async def load_all(self) -> tuple[int, dict[str, Experiment]]:
        """(revision, experiments) read in one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(self.keys.experiments_rev)
        pipe.hgetall(self.keys.experiments)
        rev, raw = await pipe.execute()
        return int(rev or 0), {k.decode(): Experiment.model_validate_json(v) for k, v in raw.items()}
