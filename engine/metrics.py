"""Observability as sensor hooks (faust's pattern): logic calls ``sensor.on_*``,
and only :class:`PrometheusSensor` knows about Prometheus.

``METRIC_NAMES`` is the single list the Grafana dashboard, the alert rules and
their tests are checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

METRIC_NAMES: tuple[str, ...] = (
    "abengine_decisions_total",
    "abengine_decide_latency_seconds",
    "abengine_events_consumed_total",
    "abengine_rewards_joined_total",
    "abengine_events_rejected_total",
    "abengine_deadletter_total",
    "abengine_consumer_lag",
    "abengine_variant_reward_rate",
    "abengine_allocator_posterior_mean",
    "abengine_policy_version",
    "abengine_variant_drift",
    "abengine_redis_degraded",
    "abengine_degraded_decisions_total",
    "abengine_decide_round_size",
    "abengine_http_requests_total",
    "abengine_generation_requests_total",
    "abengine_generation_latency_seconds",
    "abengine_generation_dropped_total",
    "abengine_generation_failures_total",
    "abengine_policy_rebuilds_total",
    "abengine_event_loop_lag_seconds",
    "abengine_gc_pause_seconds",
)

REJECT_REASONS = ("invalid", "late", "unmatched", "duplicate", "foreign_allocator", "repeat")


class Sensor:
    """No-op hooks; subclasses record what they care about."""

    def on_decision(self, experiment: str, variant: str, allocator: str, seconds: float) -> None: ...
    def on_degraded_decision(self, experiment: str, n: int = 1) -> None: ...
    def on_decide_round(self, experiment: str, decisions: int) -> None: ...
    def on_http(self, route: str, status: int) -> None: ...
    def on_events_consumed(self, kind: str, n: int) -> None: ...
    def on_rewards_joined(self, experiment: str, kind: str, n: int) -> None: ...
    def on_rejected(self, reason: str, n: int = 1) -> None: ...
    def on_deadletter(self, reason: str, n: int = 1) -> None: ...
    def on_consumer_lag(self, topic: str, partition: int, lag: int) -> None: ...
    def on_policy(
        self, experiment: str, version: int, summary: Mapping[str, Mapping[str, float]]
    ) -> None: ...
    def on_redis_degraded(self, degraded: bool) -> None: ...
    def on_generation(self, backend: str, outcome: str, seconds: float) -> None: ...
    def on_generation_dropped(self, reason: str, n: int) -> None: ...
    def on_generation_failure(self, reason: str) -> None: ...
    def on_policy_rebuilt(self, experiment: str) -> None: ...
    def on_loop_lag(self, seconds: float) -> None: ...
    def on_gc_pause(self, generation: int, seconds: float) -> None: ...


class PrometheusSensor(Sensor):
    """Exports every hook as Prometheus metrics in its own registry (plus process metrics)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.decisions = Counter(
            "abengine_decisions", "Decisions served.", ["experiment", "variant", "allocator"], registry=r
        )
        self.decide_latency = Histogram(
            "abengine_decide_latency_seconds",
            "Time to answer a decide request (in-process).",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.degraded_decisions = Counter(
            "abengine_degraded_decisions",
            "Decisions served without memory because Redis was slow or down.",
            ["experiment"],
            registry=r,
        )
        self.round_size = Histogram(
            "abengine_decide_round_size",
            "Decisions made together in one decide round (one memory read, one batched choice).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.http = Counter(
            "abengine_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.consumed = Counter("abengine_events_consumed", "Records consumed by type.", ["type"], registry=r)
        self.joined = Counter(
            "abengine_rewards_joined",
            "Events joined to their decision and applied.",
            ["experiment", "kind"],
            registry=r,
        )
        self.rejected = Counter(
            "abengine_events_rejected", "Events not applied, by reason.", ["reason"], registry=r
        )
        self.deadletter = Counter(
            "abengine_deadletter", "Records written to the dead-letter topic.", ["reason"], registry=r
        )
        self.lag = Gauge(
            "abengine_consumer_lag",
            "Records behind the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.reward_rate = Gauge(
            "abengine_variant_reward_rate",
            "Observed click rate per variant.",
            ["experiment", "variant"],
            registry=r,
        )
        self.posterior_mean = Gauge(
            "abengine_allocator_posterior_mean",
            "Allocator's estimate per variant.",
            ["experiment", "variant"],
            registry=r,
        )
        self.drift = Gauge(
            "abengine_variant_drift",
            "How far a variant's recent rewards moved from the learner's estimate (memory-based drift).",
            ["experiment", "variant"],
            registry=r,
        )
        self.policy_version = Gauge(
            "abengine_policy_version", "Version of the policy served.", ["experiment"], registry=r
        )
        self.policy_rebuilds = Counter(
            "abengine_policy_rebuilds",
            "Stored policies that could not be restored (e.g. an older snapshot format) and were started "
            "afresh: by serving meanwhile, and by the learner, which replays the reward stream into it "
            "(the log names the experiment).",
            registry=r,
        )
        self.redis_degraded = Gauge("abengine_redis_degraded", "1 while Redis is unreachable.", registry=r)
        self.generation = Counter(
            "abengine_generation_requests", "Variant generation requests.", ["backend", "outcome"], registry=r
        )
        self.generation_dropped = Counter(
            "abengine_generation_dropped",
            "Generated candidates dropped by validation, by reason.",
            ["reason"],
            registry=r,
        )
        self.generation_failures = Counter(
            "abengine_generation_failures",
            "Generation requests that failed (answered 503), by reason.",
            ["reason"],
            registry=r,
        )
        self.generation_latency = Histogram(
            "abengine_generation_latency_seconds",
            "Generation latency.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.loop_lag = Histogram(
            "abengine_event_loop_lag_seconds",
            "How late the event loop woke a 10 ms timer: the stall any request arriving then also waited.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.gc_pause = Histogram(
            "abengine_gc_pause_seconds",
            "Garbage collection pauses (the event loop waits for them), by generation.",
            ["generation"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self._gc_pause_by_gen = [self.gc_pause.labels(str(g)) for g in range(3)]
        # the labelled children of the per-request series, looked up once per label set (as many as the
        # series themselves, which the registry keeps anyway): ``labels()`` costs ~2.5 µs, per decision
        self._children: dict[tuple[object, ...], Any] = {}
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for kind in ("decision", "impression", "click", "conversion"):
            self.consumed.labels(kind)

    def on_decision(self, experiment: str, variant: str, allocator: str, seconds: float) -> None:
        self._child(self.decisions, experiment, variant, allocator).inc()
        self.decide_latency.observe(seconds)

    def on_degraded_decision(self, experiment: str, n: int = 1) -> None:
        self.degraded_decisions.labels(experiment).inc(n)

    def on_decide_round(self, experiment: str, decisions: int) -> None:
        self.round_size.observe(decisions)

    def on_http(self, route: str, status: int) -> None:
        self._child(self.http, route, str(status)).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up in the registry once per label set (PERFORMANCE.md)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def on_events_consumed(self, kind: str, n: int) -> None:
        self.consumed.labels(kind).inc(n)

    def on_rewards_joined(self, experiment: str, kind: str, n: int) -> None:
        self.joined.labels(experiment, kind).inc(n)

    def on_rejected(self, reason: str, n: int = 1) -> None:
        self.rejected.labels(reason).inc(n)

    def on_deadletter(self, reason: str, n: int = 1) -> None:
        self.deadletter.labels(reason).inc(n)

    def on_consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic, str(partition)).set(lag)

    def on_policy(self, experiment: str, version: int, summary: Mapping[str, Mapping[str, float]]) -> None:
        self.policy_version.labels(experiment).set(version)
        for variant, stats in summary.items():
            if "posterior_mean" in stats:
                self.posterior_mean.labels(experiment, variant).set(stats["posterior_mean"])
            if "drift" in stats:
                self.drift.labels(experiment, variant).set(stats["drift"])
            if "click_rate" in stats:
                self.reward_rate.labels(experiment, variant).set(stats["click_rate"])

    def on_redis_degraded(self, degraded: bool) -> None:
        self.redis_degraded.set(1 if degraded else 0)

    def on_generation(self, backend: str, outcome: str, seconds: float) -> None:
        self.generation.labels(backend, outcome).inc()
        self.generation_latency.observe(seconds)

    def on_generation_dropped(self, reason: str, n: int) -> None:
        self.generation_dropped.labels(reason).inc(n)

    def on_generation_failure(self, reason: str) -> None:
        self.generation_failures.labels(reason).inc()

    def on_policy_rebuilt(self, experiment: str) -> None:
        self.policy_rebuilds.inc()

    def on_loop_lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)

    def on_gc_pause(self, generation: int, seconds: float) -> None:
        self._gc_pause_by_gen[generation].observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
