"""Decisions of concurrent requests made together: one memory read and one allocator pass per round.

An allocator that reads the user's memory (the actor-critic) needs a Redis round trip per decision, and
its choice is a handful of small numpy operations whose per-call cost dwarfs their arithmetic. Under load
many decisions wait at once, so a *round* serves all of them: one ``MGET`` of their users' memories per
experiment (under the store's short time limit; when it fails the round is served without memory and
each of its decisions counted as degraded), then one :meth:`ServingState.decide_many` per experiment,
whose allocator chooses for all in one batched pass. Requests that arrive while a round runs wait for the
next one, so a lone request goes out at once, and under load a decision waits for at most the round in
flight and its own (each: one memory read, bounded by the store's time limit, and the round's CPU;
beyond ``MAX_ROUND`` waiting requests, one more round per ``MAX_ROUND`` ahead of it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from engine.metrics import Sensor
from engine.serving import Served, ServingState
from schemas import DecisionRequest

log = logging.getLogger(__name__)

_Waiter = tuple[str, DecisionRequest, "asyncio.Future[Served]"]

#: decisions one round takes at most (the rest wait for the next): a flood of concurrent requests is
#: served in slices that each hold the event loop for a bounded time (~256 x 30 us), not in one pass
MAX_ROUND = 256


class DecisionRounds:
    """Coalesces the decide path of memory-reading allocators into rounds (see module doc).

    ``store_for(experiment_id)`` gives the experiment's :class:`~engine.memory.store.UserMemoryStore`, or
    None when its allocator reads no memory (then its decisions are served without one).
    """

    def __init__(self, serving: ServingState, store_for: Callable[[str], Any], sensor: Sensor) -> None:
        self.serving = serving
        self.store_for = store_for
        self.sensor = sensor
        self.rounds = 0
        self._waiting: list[_Waiter] = []
        self._task: asyncio.Task[None] | None = None

    async def decide(self, experiment_id: str, request: DecisionRequest) -> Served:
        """The decision for one request, made in the next round; raises what ``ServingState.decide``
        would for it (unknown or stopped experiment, a request the allocator refuses)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Served] = loop.create_future()
        self._waiting.append((experiment_id, request, fut))
        if self._task is None:
            self._task = loop.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_ROUND], self._waiting[MAX_ROUND:]
                try:
                    await self._round(batch)
                except Exception as exc:  # a bug fails its round's requests (500s), never leaves them waiting
                    log.exception("decision round failed")
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
        finally:
            self._task = None

    async def _round(self, batch: list[_Waiter]) -> None:
        self.rounds += 1
        by_experiment: dict[str, list[tuple[DecisionRequest, asyncio.Future[Served]]]] = {}
        for experiment_id, request, fut in batch:
            if not fut.done():  # a request whose client went away is not decided
                by_experiment.setdefault(experiment_id, []).append((request, fut))
        memories = await asyncio.gather(
            *(self._memories(e, [r for r, _ in items]) for e, items in by_experiment.items())
        )
        for (experiment_id, items), mems in zip(by_experiment.items(), memories, strict=True):
            self.sensor.on_decide_round(experiment_id, len(items))
            served = self.serving.decide_many(experiment_id, [r for r, _ in items], mems)
            for (_, fut), got in zip(items, served, strict=True):
                if fut.done():
                    continue
                if isinstance(got, Exception):
                    fut.set_exception(got)
                else:
                    fut.set_result(got)

    async def _memories(self, experiment_id: str, requests: list[DecisionRequest]) -> list[Any] | None:
        """The requests' users' memories in order, one ``MGET``; None when the read degraded (counted)."""
        store = self.store_for(experiment_id)
        if store is None:
            return None
        got = await store.read([r.user_id for r in requests])
        if got is None:
            self.sensor.on_degraded_decision(experiment_id, len(requests))
            return None
        return [got[r.user_id] for r in requests]
