"""PNG plots of evaluation runs (matplotlib, Agg backend): cumulative reward / regret and arm shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from engine.evaluation.runner import SeedRun


def plot_curves(
    runs: Sequence[SeedRun],
    scenario: str,
    path: Path,
    title: str,
    ylabel: str,
    xmax: float,
    vline: float | None = None,
) -> Path:
    """Mean over seeds of each policy's curve (cumulative mean reward, or cumulative regret)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    names = sorted({r.policy for r in runs if r.scenario == scenario})
    for name in names:
        curves = np.stack([r.curve for r in runs if r.scenario == scenario and r.policy == name])
        x = np.linspace(0, xmax, curves.shape[1])
        ax.plot(x, curves.mean(axis=0), label=name, lw=2 if name.startswith("actor_critic") else 1.2)
    if vline is not None:
        ax.axvline(vline, color="grey", ls="--", lw=1)
    ax.set_xlabel("events (matched events for replay, decisions for the simulator)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_shares(runs: Sequence[SeedRun], scenario: str, arms: Sequence[str], path: Path, title: str) -> Path:
    """Arm shares over time (mean over seeds), one panel per policy."""
    names = sorted({r.policy for r in runs if r.scenario == scenario})
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names, strict=False):
        sh = np.stack([r.shares for r in runs if r.scenario == scenario and r.policy == name]).mean(axis=0)
        x = np.linspace(0, 1, sh.shape[0])
        ax.stackplot(x, sh.T, labels=list(arms))
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title + " (x: fraction of the stream)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
