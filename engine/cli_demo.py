"""``abengine demo``: the whole loop on embedded defaults, end to end.

Starts a real broker and Redis (unless configured), a real worker process,
creates an experiment with three variants of known click rate, drives
simulated users against the HTTP API, waits until every event is ingested, and
shows Thompson sampling converging to the best variant.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from engine.config import Settings

DEMO_VARIANTS = [
    ("calm", "Our spring collection is here", 0.030),
    ("urgent", "Last day: 20% off the spring collection", 0.045),
    ("social", "Join 40,000 readers who already picked their spring look", 0.070),
]


@click.command("demo")
@click.option("--decisions", "n_decisions", default=20000, show_default=True, help="Simulated decisions.")
@click.option("--concurrency", default=32, show_default=True, help="Simulated users in flight.")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated population.")
@click.option("--allocator", default="thompson", show_default=True, help="Allocator of the demo experiment.")
def demo_cmd(n_decisions: int, concurrency: int, seed: int, allocator: str) -> None:
    """Run the whole engine on embedded defaults and watch it learn.

    Three headline variants with true click rates 3.0%, 4.5% and 7.0%; users
    click at those rates; a real worker serves every decision, ingests every
    impression, click and conversion from Kafka, and Thompson sampling shifts
    traffic to the best variant. Prints a summary table and the metrics.
    """
    from engine.services.connect import services

    settings = Settings()
    with services(settings) as ep:
        if ep.embedded_kafka:  # the worker reaches our embedded broker by address: tell it it is Tansu
            settings = settings.model_copy(update={"kafka_broker": "tansu"})
        asyncio.run(
            _demo(settings, ep.bootstrap_servers, ep.redis_url, n_decisions, concurrency, seed, allocator)
        )


async def _start_worker(
    settings: Settings, bootstrap: str, redis_url: str, log_path: Path
) -> tuple[subprocess.Popen[bytes], str]:
    from engine.services.embedded import free_port

    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REDIS_URL": redis_url,
        "ABENGINE_HTTP_PORT": str(port),
        "ABENGINE_LOG_LEVEL": "warning",
        "ABENGINE_KAFKA_BROKER": settings.kafka_broker,
    }
    out = open(log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(
    base_url: str, timeout: float = 120.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll /readyz until the worker answers 200."""
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise click.ClickException(f"worker exited with {proc.returncode}")
            try:
                async with session.get(f"{base_url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise click.ClickException(f"worker at {base_url} not ready after {timeout:.0f}s")


async def _demo(
    settings: Settings, bootstrap: str, redis_url: str, n: int, concurrency: int, seed: int, allocator: str
) -> None:
    import aiohttp
    from rich.console import Console
    from rich.table import Table
    from tqdm import tqdm

    from producers.kafka import EventProducer
    from producers.traffic import Segment, TrafficGenerator

    console = Console(width=max(130, shutil.get_terminal_size().columns))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "demo-worker.log"
    console.print(f"[bold]abengine demo[/] broker={bootstrap} redis={redis_url} (worker log: {log_path})")
    proc, base = await _start_worker(settings, bootstrap, redis_url, log_path)
    try:
        t0 = time.monotonic()
        await wait_ready(base, proc=proc)
        console.print(f"worker ready at {base} in {time.monotonic() - t0:.1f}s")
        exp_id = f"demo-{int(time.time())}"
        spec = {
            "id": exp_id,
            "name": "Spring campaign headline",
            "allocator": allocator,
            "variants": [{"id": vid, "text": text} for vid, text, _ in DEMO_VARIANTS],
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/v1/experiments", json=spec) as resp:
                if resp.status != 201:
                    raise click.ClickException(f"could not create the experiment: {await resp.text()}")
            producer = EventProducer(bootstrap, settings)
            await producer.start()
            truth = {vid: ctr for vid, _, ctr in DEMO_VARIANTS}
            gen = TrafficGenerator(
                base, exp_id, [Segment("all", 1.0, truth)], producer, concurrency=concurrency, seed=seed
            )
            with tqdm(total=n, desc="decisions", unit="req") as bar:
                t1 = time.monotonic()
                stats = await gen.run(n, progress=bar.update)
                elapsed = time.monotonic() - t1
            await producer.stop()
            console.print(
                f"{n} decisions in {elapsed:.1f}s ({n / elapsed:,.0f}/s), {stats.distinct_events} events sent"
            )
            body = await _wait_ingested(session, base, exp_id, stats.distinct_events)
            async with session.get(f"{base}/metrics") as resp:
                metrics_text = await resp.text()
            _summary(console, Table, stats, body, truth)
            await _content_tools(console, session, base, exp_id, truth)
        console.print("\n[bold]/metrics[/] (abengine counters):")
        for line in metrics_text.splitlines():
            if line.startswith(
                (
                    "abengine_decisions_total",
                    "abengine_events_consumed_total",
                    "abengine_rewards_joined_total",
                    "abengine_events_rejected_total",
                    "abengine_allocator_posterior_mean",
                    "abengine_decide_latency_seconds_count",
                )
            ):
                console.print("  " + line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _wait_ingested(
    session: object, base: str, exp_id: str, expected: int, timeout: float = 120.0
) -> dict:
    """Wait until the ledger has applied every distinct event sent (the worker learns from Kafka)."""
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    body: dict = {}
    with tqdm(total=expected, desc="events ingested", unit="ev") as bar:
        while time.monotonic() < deadline:
            async with session.get(f"{base}/v1/experiments/{exp_id}") as resp:  # type: ignore[attr-defined]
                body = await resp.json()
            ledger = body.get("ledger") or {}
            done = sum(v for k, v in ledger.items() if k.startswith(("applied:", "repeat:")))
            bar.update(done - bar.n)
            if done >= expected:
                break
            await asyncio.sleep(0.5)
    await asyncio.sleep(2.5)  # one snapshot interval + refresh so the policy shown is the final one
    async with session.get(f"{base}/v1/experiments/{exp_id}") as resp:  # type: ignore[attr-defined]
        return await resp.json()


async def _content_tools(console: Any, session: Any, base: str, exp_id: str, truth: dict[str, float]) -> None:
    """What the content ranker predicts for the variants, and new candidates from the LLM."""
    deadline = time.monotonic() + 120
    while True:
        async with session.get(f"{base}/v1/experiments/{exp_id}/ranking") as resp:
            if resp.status == 200:
                ranking = await resp.json()
                break
        if time.monotonic() > deadline:
            console.print("[yellow]content ranker not available[/]")
            ranking = None
            break
        await asyncio.sleep(1.0)
    if ranking is not None:
        order = " > ".join(r["variant_id"] for r in ranking["ranking"])
        true_order = " > ".join(sorted(truth, key=truth.get, reverse=True))  # type: ignore[arg-type]
        console.print(
            f"\n[bold]content ranker[/] {ranking['model_version']} predicted order (before any "
            f"traffic, from the texts alone): {order}; true order: {true_order}"
        )
    console.print("\n[bold]generating new candidates[/] (LLM backend, off the decide path) ...")
    request = {
        "base": DEMO_VARIANTS[0][1],
        "goal": "more clicks from returning customers",
        "attributes": ["urgency", "social_proof"],
        "n": 3,
        "seed": 11,
        "max_chars": 90,
    }
    t0 = time.monotonic()
    async with session.post(f"{base}/v1/experiments/{exp_id}/generate", json=request) as resp:
        body = await resp.json()
        if resp.status != 200:
            console.print(f"[yellow]generation unavailable: {body['error']['message']}[/]")
            return
    console.print(
        f"{len(body['candidates'])} accepted of {body['raw_count']} written by {body['backend']}:"
        f"{body['model']} in {time.monotonic() - t0:.1f}s (dropped: {body['dropped'] or 'none'})"
    )
    for c in body["candidates"]:
        p = c["provenance"]
        console.print(
            f"  - {c['text']!r}  [template {p['template_version']}, seed {p['seed']}, "
            f"attributes {', '.join(p['attributes'])}]"
        )


def _summary(console: object, table_cls: type, stats: object, body: dict, truth: dict[str, float]) -> None:
    timeline = stats.timeline  # type: ignore[attr-defined]
    n = len(timeline)
    first, last = timeline[: n // 5], timeline[-(n // 5) :]
    policy = (body.get("policy") or {}).get("variants", {})
    table = table_cls(
        title=f"Experiment {body['experiment']['id']} ({body['experiment']['allocator']}, "
        f"policy v{(body.get('policy') or {}).get('version')})"
    )
    for col in (
        "variant",
        "true CTR",
        "share first 20%",
        "share last 20%",
        "impressions",
        "clicks",
        "observed CTR",
        "posterior mean",
        "P(best)",
    ):
        table.add_column(col, justify="right")
    for vid, ctr in truth.items():
        p = policy.get(vid, {})
        table.add_row(
            vid,
            f"{ctr:.3f}",
            f"{first.count(vid) / max(len(first), 1):.1%}",
            f"{last.count(vid) / max(len(last), 1):.1%}",
            f"{int(p.get('trials', 0))}",
            f"{int(p.get('clicks', 0))}",
            f"{p.get('click_rate', 0):.4f}",
            f"{p.get('posterior_mean', float('nan')):.4f}",
            f"{p.get('prob_best', float('nan')):.3f}",
        )
    console.print(table)  # type: ignore[attr-defined]
    best = max(truth, key=truth.get)  # type: ignore[arg-type]
    console.print(
        f"best variant [bold]{best}[/]: share went from {first.count(best) / max(len(first), 1):.1%} "  # type: ignore[attr-defined]
        f"to {last.count(best) / max(len(last), 1):.1%}; ledger: {body.get('ledger')}"
    )
