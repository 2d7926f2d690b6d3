"""Serving decisions from in-memory policy copies.

Every worker serves every experiment from a replicated policy snapshot (the
owner's learner publishes it to Redis; :meth:`ServingState.refresh` reloads it
off the hot path). ``decide`` itself is pure CPU: no Redis, no model load.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from engine.allocators import make_allocator, restore_allocator
from engine.metrics import Sensor
from engine.store import ExperimentStore, PolicyStore
from engine.store.policies import StoredPolicy
from engine.types import Allocator, Choice, DecisionContext
from schemas import DecisionRequest, Experiment

log = logging.getLogger(__name__)


class ExperimentNotFound(LookupError):
    pass


class ExperimentNotRunning(Exception):
    pass


class Served(NamedTuple):
    """One decision, as plain dicts ready for ``orjson.dumps``: ``answer`` has the shape of
    :class:`schemas.Decision` (what the client gets), ``record`` of :class:`schemas.DecisionLog`
    (what is logged). Plain dicts, not models: building and dumping two pydantic models cost more
    than the Thompson allocator's whole choice (tests/test_serving.py checks that both validate)."""

    answer: dict[str, Any]
    record: dict[str, Any]

    def answer_json(self) -> bytes:
        return orjson.dumps(self.answer, option=orjson.OPT_UTC_Z)

    def record_json(self) -> bytes:
        return orjson.dumps(self.record, option=orjson.OPT_UTC_Z)


def engine_options(experiment: Experiment) -> dict[str, Any]:
    """What the engine offers every allocator about an experiment (see ``make_allocator``)."""
    return {
        "variant_texts": {v.id: v.text for v in experiment.variants},
        "split": experiment.split,
        "conversion_weight": experiment.conversion_weight,
        "attribution_window_s": experiment.attribution_window_s,
        "prior_pseudo_counts": experiment.prior,
    }


def fresh_allocator(experiment: Experiment, seed: int | None = None) -> Allocator:
    """An untrained allocator for ``experiment`` (raises ValueError on a bad config)."""
    return make_allocator(
        experiment.allocator,
        experiment.variant_ids,
        experiment.allocator_config,
        seed=experiment.seed if seed is None else seed,
        engine_options=engine_options(experiment),
    )


def align_variants(allocator: Allocator, experiment: Experiment) -> Allocator:
    """Add variants registered after the snapshot was taken (cold start)."""
    for vid in experiment.variant_ids:
        if vid not in allocator.variant_ids:
            allocator.add_variant(vid)
    return allocator


def restore_or_none(
    stored: StoredPolicy, seed: int | None, experiment_id: str, sensor: Sensor
) -> Allocator | None:
    """The stored policy, or None (logged and counted) when it cannot be restored, e.g. a snapshot an older
    release wrote in another format: callers start from a fresh policy, which the experiment's learner
    fills by replaying the reward stream, instead of failing every batch or decide of the experiment."""
    try:
        return restore_allocator(stored.snapshot, seed=seed)
    except Exception as exc:
        log.error(
            "stored policy of %s cannot be restored (%s: %s); starting from a fresh one (the learner "
            "replays the reward stream into it)",
            experiment_id,
            type(exc).__name__,
            exc,
        )
        sensor.on_policy_rebuilt(experiment_id)
        return None


def realigned(allocator: Allocator, experiment: Experiment) -> Allocator:
    """A copy of a serving allocator with the experiment's new variants (the original keeps serving
    while the copy is built in a thread, then replaces it)."""
    return align_variants(restore_allocator(allocator.snapshot()), experiment)


class ServingState:
    """Experiments and serving policies of one worker."""

    def __init__(
        self, experiments: ExperimentStore, policies: PolicyStore, sensor: Sensor, seed: int | None = None
    ) -> None:
        self.store = experiments
        self.policy_store = policies
        self.sensor = sensor
        self.seed = seed
        self.experiments: dict[str, Experiment] = {}
        self.allocators: dict[str, Allocator] = {}
        self._rev = -1
        self._policy_versions: dict[str, int] = {}

    async def refresh(self) -> None:
        """Reload experiments and policies that changed (one or two Redis round trips when idle).

        An experiment is published to ``self.experiments`` only together with a servable
        allocator, so a decide never sees an experiment whose policy is still being built.
        """
        rev = await self.store.revision()
        latest = self.experiments
        if rev != self._rev:
            self._rev, latest = await self.store.load_all()
        versions = await self.policy_store.versions()
        for exp_id, experiment in list(latest.items()):
            version = versions.get(exp_id, 0)
            current = self.allocators.get(exp_id)
            try:
                if current is not None and self._policy_versions.get(exp_id) == version:
                    if len(current.variant_ids) != len(experiment.variants):
                        self.allocators[exp_id] = await asyncio.to_thread(realigned, current, experiment)
                    self.experiments[exp_id] = experiment
                    continue
                stored = await self.policy_store.load(exp_id) if version else None
                # building may embed variant texts (model load on first use): never on the event loop
                allocator = await asyncio.to_thread(self._build, experiment, stored)
                self.allocators[exp_id] = allocator
                self.experiments[exp_id] = experiment
                self._policy_versions[exp_id] = version
                self.sensor.on_policy(exp_id, allocator.version, allocator.summary())
            except Exception:  # one broken snapshot must not stop serving the others
                log.exception("could not load the policy of %s", exp_id)

    def _build(self, experiment: Experiment, stored: StoredPolicy | None) -> Allocator:
        allocator = restore_or_none(stored, self.seed, experiment.id, self.sensor) if stored else None
        return align_variants(allocator or fresh_allocator(experiment), experiment)

    async def upsert(self, experiment: Experiment, allocator: Allocator | None = None) -> None:
        """Make an experiment this worker just wrote servable at once (allocators built off the loop;
        the experiment is published with its allocator, never before)."""
        current = self.allocators.get(experiment.id)
        if current is None:
            self.allocators[experiment.id] = allocator or await asyncio.to_thread(fresh_allocator, experiment)
        elif len(current.variant_ids) != len(experiment.variants):
            self.allocators[experiment.id] = await asyncio.to_thread(realigned, current, experiment)
        self.experiments[experiment.id] = experiment

    def get(self, experiment_id: str) -> Experiment:
        try:
            return self.experiments[experiment_id]
        except KeyError:
            raise ExperimentNotFound(experiment_id) from None

    def decide(self, experiment_id: str, request: DecisionRequest, memory: Any = None) -> Served:
        """Choose a variant; returns the client's answer and the record to log.

        ``memory`` is the user's memory read from Redis by the caller, for allocators that use one.
        """
        experiment, allocator = self._servable(experiment_id)
        ctx = self._context(experiment, request)
        choice = allocator.choose(ctx) if memory is None else allocator.choose(ctx, memory=memory)  # type: ignore[call-arg]
        return self._served(experiment, allocator, request, choice)

    def decide_many(
        self, experiment_id: str, requests: Sequence[DecisionRequest], memories: Sequence[Any] | None = None
    ) -> list[Served | Exception]:
        """:meth:`decide` for several requests of one experiment at once (``memories`` in the same order),
        so the allocator can choose for all in one batched pass. Each request gets its ``Served`` or the
        exception :meth:`decide` would have raised for it; one refused request leaves the others be."""
        try:
            experiment, allocator = self._servable(experiment_id)
        except (ExperimentNotFound, ExperimentNotRunning) as exc:
            return [type(exc)(*exc.args) for _ in requests]  # one each: each request raises its own
        variant_ids = experiment.variant_ids
        ctxs = [self._context(experiment, r, variant_ids) for r in requests]
        choices = allocator.choose_many(ctxs, memories)
        now = datetime.now(UTC)  # decided together, at one time
        return [
            c if isinstance(c, Exception) else self._served(experiment, allocator, r, c, now)
            for r, c in zip(requests, choices, strict=True)
        ]

    def _servable(self, experiment_id: str) -> tuple[Experiment, Allocator]:
        experiment = self.get(experiment_id)
        if experiment.status != "running":
            raise ExperimentNotRunning(experiment_id)
        allocator = self.allocators.get(experiment_id)
        if allocator is None:  # published experiments always have one; be safe, never a 500
            raise ExperimentNotFound(experiment_id)
        return experiment, allocator

    @staticmethod
    def _context(
        experiment: Experiment, request: DecisionRequest, variant_ids: list[str] | None = None
    ) -> DecisionContext:
        return DecisionContext(
            experiment_id=experiment.id,
            user_id=request.user_id,
            variant_ids=experiment.variant_ids if variant_ids is None else variant_ids,
            attributes=request.attributes,
            context_text=request.context,
            features=request.features,
        )

    @staticmethod
    def _served(
        experiment: Experiment,
        allocator: Allocator,
        request: DecisionRequest,
        choice: Choice,
        now: datetime | None = None,
    ) -> Served:
        content = next(v.text for v in experiment.variants if v.id == choice.variant_id)
        answer = {
            "decision_id": os.urandom(16).hex(),  # 128 random bits, as uuid4().hex but 4x cheaper
            "experiment_id": experiment.id,
            "variant_id": choice.variant_id,
            "content": content,
            "propensity": choice.propensity,
            "allocator": allocator.name,
            "model_version": allocator.version,
            "timestamp": datetime.now(UTC) if now is None else now,
        }
        record = {
            **answer,
            "user_id": request.user_id,
            "attributes": request.attributes,
            "context": request.context,
            "features": request.features,
        }
        return Served(answer, record)
