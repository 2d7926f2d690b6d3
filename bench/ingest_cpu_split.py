"""Where an ingesting worker's time goes: CPU of the worker, Redis and Tansu, second by second.

    .venv/bin/python bench/ingest_cpu_split.py [--decisions 120000]

Runs bench_ingest's batch mode on a larger backlog and prints, once a second, each process's CPU share
(from /proc, 100% = one core) while the worker starts, joins the group and drains the backlog.
Measures; asserts nothing.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.bench_ingest as bi


def cpu_seconds(name_part: str) -> float:
    """utime + stime of every process whose command line contains ``name_part``."""
    tot = 0.0
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            cmd = open(p, "rb").read().replace(b"\0", b" ").decode(errors="ignore")  # noqa: SIM115
            if name_part in cmd:
                st = open(p.replace("cmdline", "stat")).read().rsplit(")", 1)[1].split()  # noqa: SIM115
                tot += (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return tot


def watch(seconds: int = 90) -> None:
    names = {"worker": "engine.cli worker", "redis": "redis-server", "tansu": "tansu"}
    prev = (time.time(), {k: cpu_seconds(v) for k, v in names.items()})
    for _ in range(seconds):
        time.sleep(1)
        now = (time.time(), {k: cpu_seconds(v) for k, v in names.items()})
        dt = now[0] - prev[0]
        print("  ".join(f"{k} {100 * (now[1][k] - prev[1][k]) / dt:4.0f}%" for k in names), flush=True)
        prev = now


class _Popen(subprocess.Popen):
    def __init__(self, args, *a, **k) -> None:  # type: ignore[no-untyped-def]
        super().__init__(args, *a, **k)
        if "worker" in args:
            threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    decisions = sys.argv[sys.argv.index("--decisions") + 1] if "--decisions" in sys.argv else "120000"
    bi.subprocess.Popen = _Popen  # type: ignore[misc]
    sys.argv = ["bench_ingest", "--decisions", decisions, "--modes", "batch", "--out", "/dev/null"]
    bi.main()


if __name__ == "__main__":
    main()
