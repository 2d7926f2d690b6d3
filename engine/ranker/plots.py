"""PNG plots of the ranker (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def contributions_chart(
    contributions: Mapping[str, float], title: str, path: Path | str, top: int = 15
) -> Path:
    """Horizontal bars of signed attribute contributions R^Ins_a (largest |value| first)."""
    items = sorted(contributions.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(items), 3) + 1.2))
    names = [k for k, _ in items]
    vals = [v for _, v in items]
    ax.barh(names, vals, color=["#2a9d8f" if v > 0 else "#e76f51" for v in vals])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("insight index  Δs_a · β''_a  (best − worst arm)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cv_chart(report: Mapping[str, Any], path: Path | str) -> Path:
    """Grouped-CV metrics of the paper ranker vs the pairwise ranker, with ±1 SE bars."""
    metrics = [("spearman_mean", "Spearman"), ("pairwise_accuracy", "pairwise acc."), ("top1", "top-1")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for k, (model, color) in enumerate((("paper", "#8d99ae"), ("pairwise", "#2a9d8f"))):
        vals = [report[model][m] for m, _ in metrics]
        errs = [report[model][f"{m}_se"] for m, _ in metrics]
        xs = [i + (k - 0.5) * width for i in range(len(metrics))]
        ax.bar(xs, vals, width, yerr=errs, capsize=3, color=color, label=model)
        for x, v in zip(xs, vals, strict=True):
            ax.text(x, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    ax.axhline(report["paper"]["top1_random"], color="black", ls=":", lw=0.8, label="top-1 random")
    ax.set_xticks(range(len(metrics)), [label for _, label in metrics])
    ax.set_title(f"Grouped {report['n_splits']}-fold CV, {report['paper']['n_experiments']} experiments")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
