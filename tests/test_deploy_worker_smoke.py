"""A real ``abengine worker`` started with the Kubernetes ConfigMap's settings answers the probes and the
scrape exactly where deploy/ points them, and the image's and compose's health-check commands pass.

Kafka and Redis addresses are dropped from the ConfigMap so the worker starts its embedded broker and
Redis; everything else (bind address, topic settings, generation backend) is the deployed value.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.services.embedded import free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
STARTUP_TIMEOUT_S = 120.0

pytestmark = pytest.mark.slow


def _k8s(kind: str) -> dict[str, Any]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                return doc
    raise AssertionError(f"no {kind} in deploy/k8s")


def _engine_container() -> dict[str, Any]:
    pod = _k8s("Deployment")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "engine")


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a worker configured like a pod (embedded Kafka and Redis)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABENGINE_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("REDIS_URL", None)
    config = dict(_k8s("ConfigMap")["data"])
    config.pop("KAFKA_BOOTSTRAP_SERVERS")
    config.pop("REDIS_URL")
    port = free_port()
    workdir = tmp_path_factory.mktemp("worker")
    env.update(config)
    env.update(ABENGINE_HTTP_PORT=str(port), ABENGINE_DATA_DIR=str(workdir / "data"))
    log_path = workdir / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("abengine")), "worker"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if _get(f"{base}/readyz", timeout=1.0)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"worker not ready after {STARTUP_TIMEOUT_S}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: the worker and its embedded services
            proc.wait(timeout=10)


def test_deployment_probes_answer_on_the_deployed_settings(worker: str) -> None:
    engine = _engine_container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        status, body = _get(worker + engine[probe]["httpGet"]["path"])
        assert status == 200, f"{probe} {engine[probe]['httpGet']['path']} -> {status} {body[:200]!r}"
    ready = json.loads(_get(worker + engine["readinessProbe"]["httpGet"]["path"])[1])
    assert ready["ready"] is True and ready["redis"] is True


def test_servicemonitor_path_serves_the_engine_metrics(worker: str) -> None:
    from engine.metrics import METRIC_NAMES

    path = _k8s("ServiceMonitor")["spec"]["endpoints"][0]["path"]
    status, body = _get(worker + path)
    assert status == 200
    text = body.decode()
    families = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
    exposed = families | {f"{f}_total" for f in families}
    missing = set(METRIC_NAMES) - exposed
    assert not missing, f"METRIC_NAMES the worker does not expose: {sorted(missing)}"


def test_image_healthcheck_command_passes(worker: str) -> None:
    """Run the Dockerfile's HEALTHCHECK command (exec form) against the worker."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    argv = json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M).group(1))
    port = worker.rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, *argv[1:]],
        env={**os.environ, "ABENGINE_HTTP_PORT": port},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert argv[0] == "python" and proc.returncode == 0, proc.stderr


def test_compose_healthcheck_command_passes(worker: str) -> None:
    """Run the engine services' compose healthcheck (CMD form) with the worker's port."""
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    port = worker.rsplit(":", 1)[1]
    for name in ("engine-1", "engine-2"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python"
        argv = [sys.executable, *(a.replace(":8080/", f":{port}/") for a in test[2:])]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_worker_reports_its_event_loop_lag_and_gc_pauses(worker: str) -> None:
    """The stall probes run in a started worker: the lag histogram fills (100 samples a second) and
    start-up's own collections were timed."""
    deadline = time.monotonic() + 10
    while True:
        text = _get(worker + "/metrics")[1].decode()
        lag = re.search(r"^abengine_event_loop_lag_seconds_count (\S+)$", text, re.M)
        if (lag and float(lag.group(1)) >= 20) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert lag and float(lag.group(1)) >= 20, text[-2000:]
    gcs = re.findall(r'^abengine_gc_pause_seconds_count\{generation="\d"\} (\S+)$', text, re.M)
    assert sum(float(n) for n in gcs) > 0
