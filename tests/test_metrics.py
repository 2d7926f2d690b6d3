"""The Prometheus sensor's per-request series, and the decide route's place in the router (both on every
decide's path, so both are kept cheap; docs/PERFORMANCE.md)."""

from __future__ import annotations

from types import SimpleNamespace

from engine.api import create_http_app
from engine.config import Settings
from engine.metrics import PrometheusSensor


def test_per_request_series_count_each_label_set() -> None:
    sensor = PrometheusSensor()
    for _ in range(3):
        sensor.on_decision("e1", "v1", "thompson", 0.001)
    sensor.on_decision("e1", "v2", "thompson", 0.001)
    sensor.on_decision("e2", "v1", "actor_critic", 0.002)
    for status in (200, 200, 422):
        sensor.on_http("/v1/experiments/{experiment_id}/decide", status)
    text = sensor.exposition().decode()
    assert 'abengine_decisions_total{allocator="thompson",experiment="e1",variant="v1"} 3.0' in text
    assert 'abengine_decisions_total{allocator="thompson",experiment="e1",variant="v2"} 1.0' in text
    assert 'abengine_decisions_total{allocator="actor_critic",experiment="e2",variant="v1"} 1.0' in text
    assert "abengine_decide_latency_seconds_count 5.0" in text
    route = 'route="/v1/experiments/{experiment_id}/decide"'
    assert f'abengine_http_requests_total{{{route},status="200"}} 2.0' in text
    assert f'abengine_http_requests_total{{{route},status="422"}} 1.0' in text


def test_decide_is_the_first_route_tried_under_experiments() -> None:
    """aiohttp tries the dynamic routes of one prefix in the order they were added: decide goes first."""
    app = create_http_app(SimpleNamespace(settings=Settings()))  # type: ignore[arg-type]
    dynamic = [r for r in app.router.resources() if "{experiment_id}" in r.canonical]
    assert dynamic[0].canonical == "/v1/experiments/{experiment_id}/decide"


def test_an_ops_api_serves_probes_and_metrics_only() -> None:
    """``ABENGINE_HTTP_API=ops`` (the idle learning process's port): no decide, events or admin routes."""
    app = create_http_app(SimpleNamespace(settings=Settings(http_api="ops")))  # type: ignore[arg-type]
    assert sorted(r.canonical for r in app.router.resources()) == ["/healthz", "/metrics", "/readyz"]
    full = create_http_app(SimpleNamespace(settings=Settings()))  # type: ignore[arg-type]
    assert "/v1/experiments/{experiment_id}/decide" in {r.canonical for r in full.router.resources()}
