"""The worker shares its cores with learning threads: a short switch interval, a one-thread torch pool."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from engine.cli_worker import share_cores_with_learning
from engine.config import Settings


def test_worker_bounds_interpreter_turns_and_torch_threads(monkeypatch) -> None:
    saved_interval, saved_threads = sys.getswitchinterval(), torch.get_num_threads()
    try:
        share_cores_with_learning(Settings())
        assert sys.getswitchinterval() == 0.0005 and torch.get_num_threads() == 1
        monkeypatch.setenv("ABENGINE_TORCH_THREADS", "2")
        monkeypatch.setenv("ABENGINE_GIL_SWITCH_INTERVAL_MS", "2")
        share_cores_with_learning(Settings())
        assert sys.getswitchinterval() == 0.002 and torch.get_num_threads() == 2
        monkeypatch.setenv("ABENGINE_TORCH_THREADS", "0")  # 0: torch's own choice, left alone
        share_cores_with_learning(Settings())
        assert torch.get_num_threads() == 2
    finally:
        sys.setswitchinterval(saved_interval)
        torch.set_num_threads(saved_threads)


IDLE_PROBE = """
import os, threading
from engine.cli_worker import set_cpu_scheduling
from engine.config import Settings
before = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
before.start()
set_cpu_scheduling(Settings())
assert os.sched_getscheduler(0) == os.SCHED_OTHER  # normal: left alone
set_cpu_scheduling(Settings(cpu_scheduling="idle"))
seen = {}
after = threading.Thread(target=lambda: seen.update(policy=os.sched_getscheduler(0)))
after.start(); after.join()
print(os.sched_getscheduler(0), os.sched_getscheduler(before.native_id), seen["policy"], os.SCHED_IDLE)
"""


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_idle_cpu_scheduling_covers_every_thread_now_and_later() -> None:
    # in a child process: a process cannot always leave SCHED_IDLE again without privileges
    out = subprocess.run([sys.executable, "-c", IDLE_PROBE], capture_output=True, text=True, check=True)
    main, existing, started_after, idle = map(int, out.stdout.split())
    assert main == existing == started_after == idle


def test_cpu_scheduling_is_validated() -> None:
    with pytest.raises(ValidationError, match="cpu_scheduling"):
        Settings(cpu_scheduling="realtime")
