"""``abengine worker``: one engine process (faust agents + HTTP API)."""

from __future__ import annotations

import logging
import sys

import click

from engine.config import Settings


@click.command("worker")
@click.option("--http-port", type=int, help="Port of the HTTP API (overrides ABENGINE_HTTP_PORT).")
@click.option("--http-host", help="Address the HTTP API binds to (overrides ABENGINE_HTTP_HOST).")
@click.option("--log-level", help="debug, info, warning or error (overrides ABENGINE_LOG_LEVEL).")
def worker_cmd(http_port: int | None, http_host: str | None, log_level: str | None) -> None:
    """Run one engine worker: serve decisions over HTTP and learn from the event topics.

    Start several with the same KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and
    ABENGINE_CONSUMER_GROUP to share the partitions; every worker serves every
    experiment. Without KAFKA_BOOTSTRAP_SERVERS / REDIS_URL the worker starts an
    embedded broker and Redis for itself (stopped on exit).
    """
    overrides = {
        k: v
        for k, v in {"http_port": http_port, "http_host": http_host, "log_level": log_level}.items()
        if v is not None
    }
    settings = Settings(**overrides)
    run_worker(settings)


def share_cores_with_learning(settings: Settings) -> None:
    """Learning runs in threads beside the serving loop (engine/learner.py): bound how long a thread holds
    the interpreter lock, and keep torch's intra-op pool from spinning on the loop's cores."""
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)


def run_worker(settings: Settings) -> None:
    import asyncio

    import uvloop

    from consumers.app import create_app
    from engine.runtime import Runtime
    from engine.services.connect import services
    from producers.kafka import ensure_topics

    logging.basicConfig(level=settings.log_level.upper())
    share_cores_with_learning(settings)
    uvloop.install()
    with services(settings) as ep:
        # before faust starts: a broker that auto-creates topics on first use would
        # otherwise create them with its own partition count
        asyncio.run(ensure_topics(ep.bootstrap_servers, settings))
        runtime = Runtime(
            settings,
            bootstrap_servers=ep.bootstrap_servers,
            redis_url=ep.redis_url,
            embedded_kafka=ep.embedded_kafka,
        )
        app = create_app(runtime)
        worker = make_worker(app, settings.log_level)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise


def make_worker(app: object, log_level: str) -> object:
    """faust's Worker, without its terminal spinner.

    The spinner's log handler lowers the root logger to DEBUG, so every library's debug call (aiokafka
    logs one per produced record) builds a LogRecord on the hot path: 8% of the worker's main-thread
    samples in a py-spy profile under load. Without it the root logger keeps ``log_level``.
    """
    from faust.worker import Worker

    worker = Worker(app, loglevel=log_level, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker
