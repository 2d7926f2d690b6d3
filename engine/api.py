"""The HTTP API (aiohttp), served from inside the faust worker.

Every error is JSON ``{"error": {"status", "code", "message", "fields": [{"field", "message"}]}}``:
malformed JSON is a 400 naming ``body``, a schema violation a 422 naming each
field, an unknown experiment a 404, a body over the limit a 413.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from engine.generation.models import GenerationRequest
from engine.runtime import Runtime
from engine.serving import ExperimentNotFound, ExperimentNotRunning, fresh_allocator
from engine.store.registry import ExperimentExists
from producers.kafka import ProducerUnavailable
from schemas import TOPIC_OF_EVENT, DecisionRequest, EventBatch, Experiment, ExperimentSpec, Variant

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, fields: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(
    status: int, code: str, message: str, fields: list[dict[str, str]] | None = None
) -> web.Response:
    return json_response(
        {"error": {"status": status, "code": code, "message": message, "fields": fields or []}}, status
    )


def validation_error(exc: ValidationError) -> ApiError:
    """400 for unparseable JSON, else 422 with one entry per offending field."""
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return ApiError(
            400,
            "malformed_json",
            "request body is not valid JSON",
            [{"field": "body", "message": errors[0]["msg"]}],
        )
    fields = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in errors[:20]
    ]
    names = ", ".join(f["field"] for f in fields)
    return ApiError(422, "validation_error", f"invalid request: {names}", fields)


def parse(model: type[Any], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


class RateLimiter:
    """Token bucket per client address, bounded in memory (least recently seen evicted)."""

    def __init__(self, rate: float, max_clients: int = 10_000) -> None:
        self.rate, self.burst, self.max_clients = rate, max(2 * rate, 1.0), max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str, now: float) -> bool:
        tokens, last = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self.buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return allowed


RATE_LIMITER: web.AppKey[RateLimiter | None] = web.AppKey("rate_limiter", object)  # type: ignore[arg-type]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    limiter = request.app[RATE_LIMITER]
    try:
        if limiter is not None and not limiter.allow(request.remote or "", time.monotonic()):
            raise ApiError(429, "rate_limited", "too many requests from this client")
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.fields)
    except web.HTTPRequestEntityTooLarge:
        limit = runtime.settings.max_body_bytes
        response = error_response(
            413,
            "body_too_large",
            f"request body exceeds {limit} bytes",
            [{"field": "body", "message": f"at most {limit} bytes"}],
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except (RedisError, OSError) as exc:
        response = error_response(503, "redis_unavailable", f"Redis is unavailable: {type(exc).__name__}")
    except Exception:  # a bug: answer JSON, log the traceback, keep serving
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = error_response(500, "internal_error", "internal error")
    runtime.sensor.on_http(_route_name(request), response.status)
    return response


def _require(request: web.Request, token: str | None) -> None:
    if token is None:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong bearer token",
            [{"field": "Authorization", "message": "expected 'Bearer <token>'"}],
        )


def admin(request: web.Request) -> None:
    _require(request, request.app[RUNTIME].settings.admin_token)


def client(request: web.Request) -> None:
    _require(request, request.app[RUNTIME].settings.client_token)


def experiment_id(request: web.Request) -> str:
    exp_id = request.match_info["experiment_id"]
    if not _ID.match(exp_id):
        raise ApiError(
            404,
            "experiment_not_found",
            f"no experiment {exp_id[:140]!r}",
            [{"field": "experiment_id", "message": "not a valid experiment id"}],
        )
    return exp_id


async def load_experiment(request: web.Request) -> Experiment:
    exp_id = experiment_id(request)
    exp = await request.app[RUNTIME].lookup_experiment(exp_id)
    if exp is None:
        raise ApiError(
            404,
            "experiment_not_found",
            f"no experiment {exp_id!r}",
            [{"field": "experiment_id", "message": "unknown experiment"}],
        )
    return exp


def _config_error(exc: ValueError) -> ApiError:
    """An allocator refused the experiment: name the field its message starts with, else ``allocator``."""
    message = str(exc)
    head = message.split(":", 1)[0]
    field = head if ":" in message and head.replace("_", "").replace(".", "").isalnum() else "allocator"
    return ApiError(422, "validation_error", message, [{"field": field, "message": message}])


# --- experiments ------------------------------------------------------------------------------------
async def create_experiment(request: web.Request) -> web.Response:
    admin(request)
    runtime = request.app[RUNTIME]
    spec: ExperimentSpec = parse(ExperimentSpec, await request.read())
    experiment = Experiment.from_spec(spec, datetime.now(UTC))
    if spec.warm_start:
        prior = await ranker_call(runtime, "warm_start_prior", [(v.id, v.text) for v in spec.variants])
        experiment = experiment.model_copy(
            update={"prior": {v: (x["alpha"], x["beta"]) for v, x in prior["variants"].items()}}
        )
    try:  # fail now, with the field named, rather than at the first decide; may embed texts: off the loop
        allocator = await asyncio.to_thread(fresh_allocator, experiment)
    except ValueError as exc:
        raise _config_error(exc) from None
    try:
        await runtime.experiments.create(experiment)
    except ExperimentExists:
        raise ApiError(
            409,
            "experiment_exists",
            f"experiment {spec.id!r} already exists",
            [{"field": "id", "message": "already exists"}],
        ) from None
    await runtime.serving.upsert(experiment, allocator)
    return json_response(experiment.model_dump(mode="json"), 201)


async def list_experiments(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    items = sorted(runtime.serving.experiments.values(), key=lambda e: e.id)
    return json_response({"experiments": [e.model_dump(mode="json") for e in items]})


async def get_experiment(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    exp = await load_experiment(request)
    allocator = runtime.serving.allocators.get(exp.id)
    status = getattr(allocator, "status", None)
    body: dict[str, Any] = {
        "experiment": exp.model_dump(mode="json"),
        "policy": None
        if allocator is None
        else {
            "allocator": allocator.name,
            "version": allocator.version,
            "variants": allocator.summary(),
            **({"status": status()} if callable(status) else {}),
        },
    }
    try:
        body["ledger"] = await runtime.ledger.counters(exp.id)
    except (RedisError, OSError):
        body["ledger"] = None
    return json_response(body)


async def stop_experiment(request: web.Request) -> web.Response:
    admin(request)
    runtime = request.app[RUNTIME]
    exp = await load_experiment(request)
    stopped = exp.model_copy(
        update={"status": "stopped", "updated_at": datetime.now(UTC), "revision": exp.revision + 1}
    )
    await runtime.experiments.put(stopped)
    await runtime.serving.upsert(stopped)
    return json_response(stopped.model_dump(mode="json"))


async def add_variant(request: web.Request) -> web.Response:
    admin(request)
    runtime = request.app[RUNTIME]
    exp = await load_experiment(request)
    variant: Variant = parse(Variant, await request.read())
    if variant.id in exp.variant_ids:
        raise ApiError(
            409,
            "variant_exists",
            f"variant {variant.id!r} already exists",
            [{"field": "id", "message": "already exists"}],
        )
    updated = exp.model_copy(
        update={
            "variants": [*exp.variants, variant],
            "updated_at": datetime.now(UTC),
            "revision": exp.revision + 1,
        }
    )
    try:
        Experiment.model_validate(updated.model_dump())
    except ValidationError as exc:
        raise validation_error(exc) from None
    await runtime.experiments.put(updated)
    await runtime.serving.upsert(updated)
    return json_response(updated.model_dump(mode="json"), 201)


async def generate(request: web.Request) -> web.Response:
    """Write candidate variants with the LLM backend (off the decide path, with its own time limit)."""
    admin(request)
    runtime = request.app[RUNTIME]
    exp = await load_experiment(request)
    from engine.generation.service import GenerationUnavailable

    req = parse(GenerationRequest, await request.read())
    if req.test_top_k is not None and runtime.ranker is None:  # say so before spending the LLM's time
        raise ApiError(
            503,
            "ranker_unavailable",
            "test_top_k needs the content ranker, which is still loading or not installed",
            [{"field": "test_top_k", "message": "content ranker unavailable"}],
        )

    async def add(experiment_id: str, candidates: Sequence[Any]) -> list[Any]:
        chosen, updates = await _prioritized(runtime, req, candidates)
        ids = await runtime.add_variants(experiment_id, [candidates[i].text for i in chosen])
        for i, vid in zip(chosen, ids, strict=True):
            updates[i]["variant_id"] = vid
        return [c.model_copy(update=u) for c, u in zip(candidates, updates, strict=True)]

    try:
        result = await runtime.generation.generate(req, experiment_id=exp.id, add_variants=add)
    except GenerationUnavailable as exc:
        raise ApiError(
            503,
            "generation_unavailable",
            str(exc),
            [{"field": "backend", "message": f"{exc.reason}: {exc.detail}"}],
        ) from None
    except ValidationError as exc:  # adding would break the experiment's bounds (e.g. too many variants)
        raise validation_error(exc) from None
    return json_response(result.model_dump(mode="json"))


async def _prioritized(
    runtime: Runtime, req: GenerationRequest, candidates: Sequence[Any]
) -> tuple[list[int], list[dict[str, Any]]]:
    """Indices of the candidates to add (all, or the ranker's test_top_k by MMR) and per-candidate fields."""
    updates: list[dict[str, Any]] = [{} for _ in candidates]
    if req.test_top_k is None:
        return list(range(len(candidates))), updates
    variants = [(str(i), c.text) for i, c in enumerate(candidates)]
    for vid, score in await ranker_call(runtime, "rank", variants):
        updates[int(vid)]["ranker_score"] = round(score, 6)
    picks = await ranker_call(runtime, "prioritize", variants, req.test_top_k, req.diversity)
    for p in picks:
        updates[int(p["variant_id"])]["test_priority"] = p["pick"]
    return [int(p["variant_id"]) for p in picks], updates


# --- content ranking (engine/ranker) ---------------------------------------------------------------
async def ranker_call(runtime: Runtime, method: str, *args: Any) -> Any:
    """Call the content ranker off the event loop (it may embed new texts)."""
    if runtime.ranker is None:
        raise ApiError(503, "ranker_unavailable", "the content ranker is still loading or not installed")
    try:
        return await asyncio.to_thread(getattr(runtime.ranker, method), *args)
    except ValueError as exc:
        raise ApiError(
            422, "validation_error", str(exc), [{"field": "variants", "message": str(exc)}]
        ) from None


def _variants(exp: Experiment) -> list[tuple[str, str]]:
    return [(v.id, v.text) for v in exp.variants]


async def ranking(request: web.Request) -> web.Response:
    exp = await load_experiment(request)
    return json_response(await ranker_call(request.app[RUNTIME], "ranking", _variants(exp)))


async def insights(request: web.Request) -> web.Response:
    """Why the best variant wins; by observed click rates once every variant has traffic."""
    runtime = request.app[RUNTIME]
    exp = await load_experiment(request)
    allocator = runtime.serving.allocators.get(exp.id)
    summary = allocator.summary() if allocator is not None else {}
    observed = None
    if summary and all(summary.get(v, {}).get("trials", 0) > 0 for v in exp.variant_ids):
        observed = {v: summary[v]["click_rate"] for v in exp.variant_ids}
    body = await ranker_call(runtime, "insights", _variants(exp), observed)
    from engine.ranker.language import render_insights

    body["sentences"] = render_insights(body)  # the template rendering of the same facts
    if request.query.get("llm", "").lower() in ("1", "true", "yes"):
        body["written"] = await _llm_write(runtime, "insights", body)
    return json_response({"observed": observed is not None, **body})


async def _llm_write(
    runtime: Runtime, kind: str, facts: dict[str, Any], variants: list[str] | None = None
) -> Any:
    """Insight/opportunity sentences written by the LLM backend with grounded prompts and a
    self-reflection pass (engine/ranker/language.py); a backend of its own, in a thread."""
    from engine.generation.sync import GenerationNotAvailable, configured_adapter
    from engine.ranker.language import GroundedWriter

    def write() -> Any:
        writer = GroundedWriter(configured_adapter(f"ranker_{kind}"), candidates=2)
        return writer.insights(facts) if kind == "insights" else writer.opportunities(facts, variants or [])

    try:  # a local model writes ~2 candidates + a reflection per fact: allow it minutes, not forever
        return await asyncio.wait_for(asyncio.to_thread(write), timeout=180.0)
    except (GenerationNotAvailable, TimeoutError) as exc:
        raise ApiError(
            503,
            "generation_unavailable",
            f"could not write with the LLM: {exc!r}",
            [{"field": "llm", "message": "the generation backend is unavailable"}],
        ) from None


async def opportunities(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    exp = await load_experiment(request)
    body = await ranker_call(runtime, "opportunities", _variants(exp))
    from engine.ranker.language import render_opportunities

    body["sentences"] = render_opportunities(body)
    if request.query.get("llm", "").lower() in ("1", "true", "yes"):
        body["written"] = await _llm_write(runtime, "opportunities", body, [v.text for v in exp.variants])
    return json_response(body)


# --- decisions and events -------------------------------------------------------------------------
async def decide(request: web.Request) -> web.Response:
    t0 = time.perf_counter()
    client(request)
    runtime = request.app[RUNTIME]
    exp_id = experiment_id(request)
    req: DecisionRequest = parse(DecisionRequest, await request.read())
    if req.experiment_id is not None and req.experiment_id != exp_id:
        raise ApiError(
            422,
            "validation_error",
            "experiment_id does not match the path",
            [{"field": "experiment_id", "message": f"expected {exp_id!r}"}],
        )
    try:
        served = await runtime.decide(exp_id, req)
    except ExperimentNotFound:
        raise ApiError(
            404,
            "experiment_not_found",
            f"no experiment {exp_id!r}",
            [{"field": "experiment_id", "message": "unknown experiment"}],
        ) from None
    except ExperimentNotRunning:
        raise ApiError(
            409,
            "experiment_stopped",
            f"experiment {exp_id!r} is stopped",
            [{"field": "experiment_id", "message": "stopped"}],
        ) from None
    except ValueError as exc:  # e.g. a feature an allocator refuses
        raise _config_error(exc) from None
    try:
        await runtime.producer.send("decisions", exp_id, served.record_json())
    except Exception as exc:  # the decision log is what rewards join to: no log, no decision
        raise ApiError(503, "decision_log_unavailable", f"could not log the decision: {exc!r}") from None
    answer = served.answer
    runtime.sensor.on_decision(exp_id, answer["variant_id"], answer["allocator"], time.perf_counter() - t0)
    return web.Response(body=served.answer_json(), content_type="application/json")


async def post_events(request: web.Request) -> web.Response:
    client(request)
    runtime = request.app[RUNTIME]
    batch: EventBatch = parse(EventBatch, await request.read())
    try:
        n = await runtime.producer.send_many(
            (TOPIC_OF_EVENT[e.type], e.experiment_id, e.model_dump_json().encode()) for e in batch.events
        )
    except ProducerUnavailable as exc:
        raise ApiError(503, "kafka_unavailable", str(exc)) from None
    return json_response({"accepted": n}, 202)


# --- ops ---------------------------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = await request.app[RUNTIME].readiness()
    state["status"] = "degraded" if state["degraded"] else ("ready" if state["ready"] else "starting")
    return json_response(state, 200 if state["ready"] else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[RUNTIME].sensor.exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def create_http_app(runtime: Runtime) -> web.Application:
    """The worker's HTTP API; with ``ABENGINE_HTTP_API=ops`` only its probes and metrics."""
    app = web.Application(client_max_size=runtime.settings.max_body_bytes, middlewares=[errors_middleware])
    app[RUNTIME] = runtime
    rps = runtime.settings.rate_limit_rps
    app[RATE_LIMITER] = RateLimiter(rps) if rps > 0 else None
    r = app.router
    if runtime.settings.http_api == "ops":
        add_ops_routes(r)
        return app
    # the decide route first: aiohttp tries the dynamic routes under /v1/experiments in the order they
    # were added, one regex each, and decide is the hot one (~7 µs per request saved, PERFORMANCE.md)
    r.add_post("/v1/experiments/{experiment_id}/decide", decide)
    r.add_post("/v1/experiments", create_experiment)
    r.add_get("/v1/experiments", list_experiments)
    r.add_get("/v1/experiments/{experiment_id}", get_experiment)
    r.add_post("/v1/experiments/{experiment_id}/stop", stop_experiment)
    r.add_post("/v1/experiments/{experiment_id}/variants", add_variant)
    r.add_post("/v1/experiments/{experiment_id}/generate", generate)
    r.add_get("/v1/experiments/{experiment_id}/ranking", ranking)
    r.add_get("/v1/experiments/{experiment_id}/insights", insights)
    r.add_get("/v1/experiments/{experiment_id}/opportunities", opportunities)
    r.add_post("/v1/events", post_events)
    add_ops_routes(r)
    return app


def add_ops_routes(r: web.UrlDispatcher) -> None:
    """What operations need of every worker process: probes and metrics."""
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
