"""A real engine cluster for integration tests: Tansu broker, embedded Redis, worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.services.embedded import EmbeddedKafka, EmbeddedRedis, free_port

FAST_SETTINGS = {
    "ABENGINE_KAFKA_BROKER": "tansu",  # the fixture's broker: short group timings
    "ABENGINE_TOPIC_PARTITIONS": "4",
    "ABENGINE_RANKER_ENABLED": "0",
    "ABENGINE_POLICY_REFRESH_S": "0.2",
    "ABENGINE_SNAPSHOT_INTERVAL_S": "0.2",
    "ABENGINE_UNMATCHED_GRACE_S": "3",
    "ABENGINE_BATCH_WITHIN_S": "0.02",
    "ABENGINE_LOG_LEVEL": "info",
}


class WorkerProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "ABENGINE_HTTP_PORT": str(self.port)}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 120.0, partitions: bool = True) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            try:
                r = httpx.get(f"{self.url}/readyz", timeout=2)
                if r.status_code == 200 and (r.json()["partitions"] or not partitions):
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready: {self.tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.kafka = EmbeddedKafka(log_path=tmp / "tansu.log").start()
        self.redis = EmbeddedRedis(tmp / "redis").start()
        self.env = {
            **os.environ,
            **FAST_SETTINGS,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "REDIS_URL": self.redis.url,
            "ABENGINE_DATA_DIR": str(tmp / "data"),
        }
        self.workers: list[WorkerProcess] = []

    def add_worker(self, name: str, **env: str) -> WorkerProcess:
        """Start a worker; ``env`` adds or overrides its settings (e.g. ABENGINE_INGEST_ENABLED="0")."""
        w = WorkerProcess(name, {**self.env, **env}, self.tmp).start()
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.redis.stop()
        self.kafka.stop()
