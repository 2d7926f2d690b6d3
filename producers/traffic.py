"""A simulated user population that drives the HTTP API and emits the resulting events.

Each simulated user asks for a decision, sees the variant (impression), clicks
with the variant's true click rate for the user's segment, and converts with
``conversion_rate`` after a click. The demo and the benchmarks use it; the
truth it was given is known, so convergence can be checked.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import orjson

from producers.kafka import EventProducer


@dataclass(frozen=True)
class Segment:
    """A group of users with their own click rate per variant."""

    name: str
    weight: float
    ctr: Mapping[str, float]

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ValueError("segment weight must be > 0")
        if any(not 0.0 <= p <= 1.0 for p in self.ctr.values()):
            raise ValueError("click rates must be in [0, 1]")


@dataclass
class TrafficStats:
    decisions: Counter[str] = field(default_factory=Counter)
    #: served variant ids in the order decisions came back (for convergence plots)
    timeline: list[str] = field(default_factory=list)
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    duplicates_sent: int = 0
    errors: int = 0

    @property
    def distinct_events(self) -> int:
        return self.impressions + self.clicks + self.conversions


class TrafficGenerator:
    """Simulated users against ``base_url`` for one experiment."""

    def __init__(
        self,
        base_url: str,
        experiment_id: str,
        segments: list[Segment],
        producer: EventProducer | None = None,
        *,
        concurrency: int = 16,
        conversion_rate: float = 0.1,
        conversion_value: float = 20.0,
        duplicate_rate: float = 0.0,
        token: str | None = None,
        seed: int = 0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.experiment_id = experiment_id
        self.segments = segments
        self.producer = producer
        self.concurrency = concurrency
        self.conversion_rate = conversion_rate
        self.conversion_value = conversion_value
        self.duplicate_rate = duplicate_rate
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.rng = random.Random(seed)
        self.stats = TrafficStats()

    def _segment(self) -> Segment:
        return self.rng.choices(self.segments, weights=[s.weight for s in self.segments])[0]

    async def run(self, n_decisions: int, progress: Callable[[int], None] | None = None) -> TrafficStats:
        """Make ``n_decisions`` decisions and emit their events; returns what was sent."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n_decisions):
            queue.put_nowait(i)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector, headers=self.headers) as session:
            await asyncio.gather(
                *(self._user_loop(session, queue, progress) for _ in range(self.concurrency))
            )
            if self.producer is not None:
                await self.producer.flush()
        return self.stats

    async def _user_loop(
        self,
        session: aiohttp.ClientSession,
        queue: asyncio.Queue[int],
        progress: Callable[[int], None] | None,
    ) -> None:
        url = f"{self.base_url}/v1/experiments/{self.experiment_id}/decide"
        while not queue.empty():
            queue.get_nowait()
            seg = self._segment()
            user = f"u{self.rng.randrange(10**9)}"
            body = {"user_id": user, "attributes": {"segment": seg.name}, "context": f"{seg.name} homepage"}
            async with session.post(
                url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
            ) as resp:
                if resp.status != 200:
                    self.stats.errors += 1
                    continue
                decision = orjson.loads(await resp.read())
            variant = decision["variant_id"]
            self.stats.decisions[variant] += 1
            self.stats.timeline.append(variant)
            events = [self._event("impression", decision, user)]
            if self.rng.random() < seg.ctr.get(variant, 0.0):
                events.append(self._event("click", decision, user))
                if self.rng.random() < self.conversion_rate:
                    events.append(self._event("conversion", decision, user, value=self.conversion_value))
            self.stats.impressions += 1
            self.stats.clicks += sum(e["type"] == "click" for e in events)
            self.stats.conversions += sum(e["type"] == "conversion" for e in events)
            if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
                events.append(events[-1])  # a client retry: same event_id again
                self.stats.duplicates_sent += 1
            await self._send(session, events)
            if progress is not None:
                progress(1)

    def _event(
        self, kind: str, decision: Mapping[str, object], user: str, value: float | None = None
    ) -> dict:
        event = {
            "type": kind,
            "event_id": uuid.UUID(int=self.rng.getrandbits(128)).hex,
            "decision_id": decision["decision_id"],
            "experiment_id": self.experiment_id,
            "event_time": datetime.now(UTC).isoformat(),
            "user_id": user,
        }
        if value is not None:
            event["value"] = value
        return event

    async def _send(self, session: aiohttp.ClientSession, events: list[dict]) -> None:
        if self.producer is not None:
            topic = {"impression": "impressions", "click": "clicks", "conversion": "conversions"}
            for e in events:
                await self.producer.send(topic[e["type"]], self.experiment_id, orjson.dumps(e))
            return
        async with session.post(
            f"{self.base_url}/v1/events",
            data=orjson.dumps({"events": events}),
            headers={"Content-Type": "application/json"},
        ) as resp:
            if resp.status != 202:
                self.stats.errors += 1
