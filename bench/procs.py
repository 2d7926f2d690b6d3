"""Stopping the worker processes a benchmark started."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable


def stop(procs: Iterable[subprocess.Popen], grace_s: float = 30.0) -> None:
    """SIGTERM every process, then SIGKILL those still running after ``grace_s``.

    A worker's clean exit leaves its consumer group first, which on the embedded broker sometimes takes
    ~10 s (seen with the code before and after 2026-12-01); a benchmark must not die of that, nor leave
    a worker behind that keeps polling the next run's broker.
    """
    procs = list(procs)
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
