"""The worker shares its cores with learning threads: a short switch interval, a one-thread torch pool."""

from __future__ import annotations

import sys

import torch

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
