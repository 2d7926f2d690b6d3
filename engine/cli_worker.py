"""``abengine worker``: one engine process (faust agents + HTTP API)."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading

import click

from engine.config import Settings
from engine.services.connect import Endpoints

log = logging.getLogger(__name__)


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


def set_cpu_scheduling(settings: Settings) -> None:
    """Put every thread of this process in the configured CPU scheduling class (threads started later
    inherit it from the thread that starts them). With ``idle`` the kernel runs the worker only on time
    that normal processes leave, and a normal process that wakes preempts it: a learning worker on the
    cores of decide-only workers then takes none of their latency."""
    if settings.cpu_scheduling == "normal":
        return
    if not hasattr(os, "SCHED_IDLE"):
        raise click.UsageError("ABENGINE_CPU_SCHEDULING=idle needs Linux (SCHED_IDLE)")
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))


#: set in the idle learning process's environment: the pid of the worker that started it
PARENT_PID_ENV = "ABENGINE_PARENT_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class IdleLearner:
    """The learning half of a worker with ``ABENGINE_LEARN_IN=idle-process``: the same worker command,
    ingesting and learning at idle CPU priority on this process's Kafka and Redis (embedded ones too),
    while this process serves only. The two stop together: when it exits on its own this worker stops
    (and exits non-zero), so an orchestrator restarts the pair whole; when this worker dies, the kernel
    sends it SIGTERM (:func:`die_with_parent`)."""

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        if not sys.platform.startswith("linux"):
            raise click.UsageError(
                "ABENGINE_LEARN_IN=idle-process needs Linux (SCHED_IDLE, PR_SET_PDEATHSIG)"
            )
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": endpoints.bootstrap_servers,
            "REDIS_URL": endpoints.redis_url,
            "ABENGINE_HTTP_HOST": settings.http_host,
            "ABENGINE_HTTP_PORT": str(settings.learner_http_port),
            "ABENGINE_LOG_LEVEL": settings.log_level,
            "ABENGINE_INGEST_ENABLED": "1",
            "ABENGINE_LEARN_IN": "serving-process",
            "ABENGINE_CPU_SCHEDULING": "idle",
            "ABENGINE_HTTP_API": "ops",  # its port is for probes and metrics: decisions go to the worker
            PARENT_PID_ENV: str(os.getpid()),
        }
        if endpoints.embedded_kafka:  # it reaches our embedded broker by address: tell it it is Tansu
            env["ABENGINE_KAFKA_BROKER"] = "tansu"
        self.exit_code: int | None = None
        self._stopping = False
        self.process = subprocess.Popen([sys.executable, "-m", "engine.cli", "worker"], env=env)
        threading.Thread(target=self._watch, name="abengine-idle-learner", daemon=True).start()

    def _watch(self) -> None:
        code = self.process.wait()
        if not self._stopping:
            self.exit_code = code
            log.error("the learning process exited (%s): stopping this worker too, to restart whole", code)
            os.kill(os.getpid(), signal.SIGTERM)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM) without waiting: as this worker starts stopping, so that the two
        shut down side by side within the orchestrator's grace period."""
        self._stopping = True
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self, grace_s: float = 30.0) -> None:
        self.terminate()
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def die_with_parent() -> None:
    """In an idle learning process: ask the kernel for SIGTERM when the worker that started it dies (even
    by SIGKILL), and exit now if it already has."""
    parent = os.environ.get(PARENT_PID_ENV)
    if parent is None:
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        raise SystemExit("the worker that started this learning process is gone")


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
    die_with_parent()
    with services(settings) as ep:
        set_cpu_scheduling(settings)  # after the embedded broker and Redis start: they keep normal priority
        # before faust starts: a broker that auto-creates topics on first use would
        # otherwise create them with its own partition count
        asyncio.run(ensure_topics(ep.bootstrap_servers, settings))
        learner = None
        if settings.learn_in == "idle-process" and settings.ingest_enabled:
            learner = IdleLearner(settings, ep)
            settings = settings.model_copy(update={"ingest_enabled": False})
        runtime = Runtime(
            settings,
            bootstrap_servers=ep.bootstrap_servers,
            redis_url=ep.redis_url,
            embedded_kafka=ep.embedded_kafka,
        )
        if learner is not None:
            runtime.on_stop.append(learner.terminate)
        app = create_app(runtime)
        worker = make_worker(app, settings.log_level)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            if learner is not None:
                learner.stop()
        if learner is not None and learner.exit_code is not None:
            raise SystemExit(f"the learning process exited with {learner.exit_code}")


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
