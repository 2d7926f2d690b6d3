"""Start and stop a vLLM OpenAI-compatible server on loopback, from the venv the prepare script made.

Used by the sidecar integration test and ``abengine generate sidecar``; production runs vLLM on a GPU
next to each worker and only needs its URL (``ABENGINE_GEN_VLLM_BASE_URL``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

DEFAULT_VENV = Path(".abengine/vllm-venv")
DEFAULT_MODEL_DIR = Path(".abengine/models/smollm2-135m-instruct")
SERVED_MODEL_NAME = "smollm2-135m-instruct"


def prepared(venv: Path = DEFAULT_VENV, model_dir: Path = DEFAULT_MODEL_DIR) -> str | None:
    """None when ``deploy/vllm/prepare_cpu_sidecar.sh`` has prepared both, else what is missing."""
    if not (venv / "PREPARED.json").is_file():
        return f"{venv}/PREPARED.json missing: run deploy/vllm/prepare_cpu_sidecar.sh"
    if not (model_dir / "config.json").is_file():
        return f"{model_dir}/config.json missing: run deploy/vllm/prepare_cpu_sidecar.sh"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class VllmSidecar:
    """A vLLM server process: ``with VllmSidecar() as s: s.base_url``; stops it on exit."""

    venv: Path = DEFAULT_VENV
    model_dir: Path = DEFAULT_MODEL_DIR
    port: int = 0
    max_model_len: int = 2048
    kv_cache_gib: int = 1
    start_timeout_s: float = 600.0
    #: Skip torch.compile warm-up: on 2 CPU cores it dominates start-up, and a test sidecar needs no speed.
    eager: bool = True
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    started_in_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(self.venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir), "--served-model-name", SERVED_MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--max-model-len", str(self.max_model_len), "--dtype", "bfloat16",
            "--disable-log-stats", *(["--enforce-eager"] if self.eager else []), *self.extra_args,
        ]  # fmt: skip

    def start(self) -> Self:
        missing = prepared(self.venv, self.model_dir)
        if missing:
            raise FileNotFoundError(missing)
        self.port = self.port or free_port()
        env = os.environ | {
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "VLLM_TARGET_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - lives with process
        started = time.perf_counter()
        # Own process group: vLLM forks an engine-core process, and stop() must end both.
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = started + self.start_timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with code {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/v1/models", timeout=2) as response:
                    if json.load(response).get("data"):
                        self.started_in_s = time.perf_counter() - started
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            time.sleep(1.0)
        self.stop()
        raise TimeoutError(f"vLLM did not serve within {self.start_timeout_s} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers of the group
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
