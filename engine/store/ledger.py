"""The reward ledger: join events to decisions exactly once, in Redis.

Kafka delivers at least once (a crash or a rebalance replays records); the
ledger makes that harmless. A batch of one experiment's events runs as Lua
scripts of at most ``script_items`` events each, one after another (each atomic):
an event joins its decision, is deduplicated by ``event_id``, checked against the
attribution window, and its rewards are appended to the experiment's reward
stream. Learners read only that stream, so every applied event reaches a learner
exactly once, whichever worker consumed it. Scripts are kept short because Redis
runs nothing else meanwhile: not the decide path's memory reads either; and by
default each waits for the one before it (``scripts_per_trip`` sends several per
round trip, which Redis may run back to back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from engine.concurrency import gather_all
from engine.config import REDIS_SCRIPT_ITEMS, REDIS_SCRIPTS_PER_TRIP
from engine.store.keys import Keys
from engine.types import Reward, RewardKind
from schemas import DecisionLog, EventBase

EventOutcome = Literal["applied", "duplicate", "repeat", "late", "pending", "unmatched"]

log = logging.getLogger(__name__)

#: Conversions credited per decision at most; more are recorded as repeats (poison guard).
MAX_CONVERSIONS_PER_DECISION = 16

#: A waiting event whose payload is still missing this long after the grace period lost it (its
#: payload is written one round trip after the join script marks it waiting): see clear_pending.lua.
ORPHAN_AFTER_MS = 60_000


@dataclass(frozen=True, slots=True)
class PackedDecisions:
    """One experiment's decisions as the record script's arguments."""

    experiment_id: str
    ttl_ms: int
    rows: bytes  # JSON: [[decision_id, decided_at_ms, record_json], ...]


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

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        stream_maxlen: int,
        grace_s: float,
        script_items: int = REDIS_SCRIPT_ITEMS,
        scripts_per_trip: int = REDIS_SCRIPTS_PER_TRIP,
    ) -> None:
        if script_items < 1 or scripts_per_trip < 1:
            raise ValueError("script_items >= 1 and scripts_per_trip >= 1 are required")
        self.redis = redis
        self.keys = keys
        self.script_items = script_items
        self.scripts_per_trip = scripts_per_trip
        self.stream_maxlen = stream_maxlen
        self.grace_ms = int(grace_s * 1000)
        scripts = resources.files("engine.store")
        self._apply = redis.register_script(scripts.joinpath("apply_events.lua").read_text())
        self._record = redis.register_script(scripts.joinpath("record_decisions.lua").read_text())
        self._clear_pending = redis.register_script(scripts.joinpath("clear_pending.lua").read_text())

    async def record_decisions(self, decisions: Sequence[DecisionLog], ttl_s: Mapping[str, float]) -> None:
        """Store decisions so later events can join them: script calls of at most ``script_items``
        decisions per experiment; idempotent."""
        await self.record_packed(self.pack_decisions(decisions, ttl_s))

    def pack_decisions(
        self, decisions: Sequence[DecisionLog], ttl_s: Mapping[str, float]
    ) -> list[PackedDecisions]:
        """The record script's arguments, one or more per experiment (``script_items`` decisions each;
        CPU only: a batch consumer packs the next batch while Redis runs this one's scripts)."""
        by_exp: dict[str, list[DecisionLog]] = {}
        for d in decisions:
            by_exp.setdefault(d.experiment_id, []).append(d)
        packed = []
        for exp_id, items in by_exp.items():
            # keep records past the window so late events are classified late, not unmatched
            ttl_ms = int((2 * ttl_s.get(exp_id, 86400.0) + 3600) * 1000)
            rows = [
                [
                    d.decision_id,
                    int(d.timestamp.timestamp() * 1000),
                    orjson.dumps(
                        {
                            "d": d.decision_id,
                            "v": d.variant_id,
                            "u": d.user_id,
                            "p": d.propensity,
                            "a": d.allocator,
                            "m": d.model_version,
                            "t": d.timestamp.timestamp(),
                            "at": d.attributes,
                            "c": d.context,
                            "f": d.features,
                        }
                    ).decode(),
                ]
                for d in items
            ]
            packed.extend(PackedDecisions(exp_id, ttl_ms, orjson.dumps(chunk)) for chunk in self.chunks(rows))
        return packed

    def chunks(self, items: Sequence[Any], size: int | None = None) -> list[Sequence[Any]]:
        """``items`` in runs of at most ``size`` (``script_items``: what one script call handles)."""
        k = size or self.script_items
        return [items[i : i + k] for i in range(0, len(items), k)]

    async def record_packed(self, packed: Sequence[PackedDecisions]) -> None:
        """Run the record script for the packed decisions: experiments in flight together (their keys
        are disjoint), one experiment's scripts one after another (so no more than one per experiment
        waits in Redis ahead of a memory read)."""
        by_exp: dict[str, list[PackedDecisions]] = {}
        for p in packed:
            by_exp.setdefault(p.experiment_id, []).append(p)
        await gather_all(self._record_in_turn(ps) for ps in by_exp.values())

    async def _record_in_turn(self, packed: Sequence[PackedDecisions]) -> None:
        calls = [
            ([self.keys.ledger(p.experiment_id)], [p.ttl_ms, self.keys.decision(p.experiment_id, ""), p.rows])
            for p in packed
        ]
        for trip in self.chunks(calls, self.scripts_per_trip):
            await self._trip(self._record, trip)

    async def _trip(self, script: Any, calls: Sequence[tuple[list[Any], list[Any]]]) -> list[Any]:
        """Run ``script`` once per (keys, args) in one round trip: a pipeline without a transaction, which
        Redis runs in order (it serves other clients between a pipeline's reads, but may run several of
        its scripts back to back: ``scripts_per_trip``)."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await script(keys=keys, args=args)]
        pipe = self.redis.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results = []
        for (keys, args), reply in zip(calls, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, NoScriptError):  # Redis lost its script cache: the script call loads it
                reply = await script(keys=keys, args=args)
            elif isinstance(reply, Exception):
                raise reply
            results.append(reply)
        return results

    def pack_events(self, events: Sequence[tuple[EventBase, bytes]]) -> list[bytes]:
        """The join script's event arguments, one per script call (``script_items`` events each): a
        JSON array instead of 4 arguments per event.

        Reads the models' ``__dict__``: ``getattr(e, "value", 0.0)`` on an event without a value
        goes through pydantic's ``__getattr__`` and an exception, and made this 3x slower.
        """
        rows = []
        for e, _ in events:
            f = e.__dict__
            rows.append(
                [
                    f["event_id"],
                    f["type"],
                    repr(float(f.get("value", 0.0))),
                    int(f["event_time"].timestamp() * 1000),
                    f["decision_id"],
                ]
            )
        return [orjson.dumps(chunk) for chunk in self.chunks(rows)]

    async def apply_events(
        self,
        experiment_id: str,
        events: Sequence[tuple[EventBase, bytes]],
        window_s: float,
        now: float | None = None,
        *,
        retry: bool = False,
        packed: Sequence[bytes] | None = None,
    ) -> list[EventOutcome]:
        """Join one experiment's events (model, raw bytes), in order; one outcome per event. Each run
        of ``script_items`` events is one atomic script call, and the runs go one after another
        (``scripts_per_trip`` of them per round trip).

        ``retry`` marks events re-submitted from the pending set, which the script then clears.
        ``packed`` is ``pack_events(events)`` when the caller packed them ahead of time.
        """
        if not events:
            return []
        now_ms = int((now if now is not None else time.time()) * 1000)
        keys = [
            self.keys.ledger(experiment_id),
            self.keys.rewards(experiment_id),
            self.keys.pending(experiment_id),
        ]
        args: list[Any] = [
            now_ms,
            int(window_s * 1000),
            self.stream_maxlen,
            MAX_CONVERSIONS_PER_DECISION,
            self.grace_ms,
            1 if retry else 0,
            self.keys.decision(experiment_id, ""),
        ]
        outcomes: list[str] = []
        runs = list(zip(self.chunks(events), packed or self.pack_events(events), strict=True))
        for trip in self.chunks(runs, self.scripts_per_trip):
            results = await self._trip(self._apply, [(keys, [*args, rows]) for _, rows in trip])
            waiting: dict[str, bytes] = {}
            for (chunk, _), result in zip(trip, results, strict=True):
                got = [r.decode() if isinstance(r, bytes) else str(r) for r in result]
                waiting.update(
                    (f"{e.type}\n{e.event_id}", raw)
                    for (e, raw), o in zip(chunk, got, strict=True)
                    if o in ("pending", "duplicate_waiting")
                )
                outcomes += ["duplicate" if o == "duplicate_waiting" else o for o in got]
            # the payloads of this trip's waiting events, before the next trip (one round trip after its
            # scripts, as clear_pending.lua allows); a copy of a waiting event writes the same payload again
            if waiting:
                pipe = self.redis.pipeline(transaction=False)
                pipe.hset(self.keys.pending_payloads(experiment_id), mapping=waiting)
                pipe.sadd(self.keys.pending_index, experiment_id)
                await pipe.execute()
        return outcomes  # type: ignore[return-value]

    async def pending(self, experiment_id: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        """(event type, raw event) of ``experiment_id`` still waiting for their decision, oldest first."""
        members = await self.redis.zrange(self.keys.pending(experiment_id), 0, limit - 1)
        if not members:
            return []
        raws = await self.redis.hmget(self.keys.pending_payloads(experiment_id), members)
        return [
            (m.partition(b"\n")[0].decode(), raw)
            for m, raw in zip(members, raws, strict=True)
            if raw is not None
        ]

    async def experiments_with_pending(self) -> list[str]:
        members = await self.redis.smembers(self.keys.pending_index)
        return sorted(m.decode() for m in members)

    async def clear_pending_index(self, experiment_id: str, now: float | None = None) -> None:
        """Forget resolved payloads, and ``experiment_id`` in the index once nothing waits.

        The payloads are compared with the pending zset inside one script (clear_pending.lua): done
        with two reads, a join script running between them made a waiting event lose its payload.
        The index lives outside the experiment's hash slot, so it is updated after: removed when
        nothing waits, and put back if an event started waiting meanwhile (the join's caller adds it
        after its script, so one of the two always sees the other).
        """
        pending = self.keys.pending(experiment_id)
        now_ms = int((now if now is not None else time.time()) * 1000)
        waiting, orphans = await self._clear_pending(
            keys=[pending, self.keys.pending_payloads(experiment_id), self.keys.ledger(experiment_id)],
            args=[now_ms, self.grace_ms + ORPHAN_AFTER_MS],
        )
        if orphans:
            log.warning(
                "%d waiting events of %s had lost their payload (counted as 'orphaned')",
                orphans,
                experiment_id,
            )
        if not waiting:
            await self.redis.srem(self.keys.pending_index, experiment_id)
            if await self.redis.zcard(pending):
                await self.redis.sadd(self.keys.pending_index, experiment_id)

    async def counters(self, experiment_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.ledger(experiment_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    async def read_rewards(
        self, experiment_id: str, after: str = "0-0", count: int = 2000
    ) -> list[StreamEntry]:
        """Rewards appended after stream id ``after`` (exclusive), oldest first."""
        rows = await self.redis.xrange(
            self.keys.rewards(experiment_id), min=f"({after}", max="+", count=count
        )
        return [StreamEntry(sid.decode(), _reward(experiment_id, fields)) for sid, fields in rows]


def _reward(experiment_id: str, f: Mapping[bytes, bytes]) -> Reward:
    d = orjson.loads(f[b"r"])
    kind: RewardKind = f[b"k"].decode()  # type: ignore[assignment]
    # positional, in Reward's field order, on a path every learned event takes (tests/test_ledger.py
    # checks every field)
    return Reward(
        d["d"],  # decision_id
        experiment_id,
        d["v"],  # variant_id
        d["u"],  # user_id
        kind,
        float(f[b"val"]),  # value
        d["p"],  # propensity
        d["a"],  # allocator
        d["m"],  # model_version
        d["t"],  # decided_at
        int(f[b"et"]) / 1000.0,  # event_time
        d["at"],  # attributes
        d["c"],  # context_text
        d["f"],  # features
    )
