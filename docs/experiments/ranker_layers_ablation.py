"""Ablation: which MiniLM layers carry the ranking signal? (issue #6)

    HF_HUB_OFFLINE=1 .venv/bin/python docs/experiments/ranker_layers_ablation.py   # ~6 min on 2 cores

Not part of the engine: the experiment behind the choice of features in docs/RANKER.md. On the same
grouped 5-fold split as ``abengine ranker cv`` (seed 0), it fits the pairwise ranker with *fixed*
hyper-parameters (no inner selection) on different parts of the layer means
(:meth:`engine.embeddings.Embedder.encode_layers`: block 0 = the token-embedding output, blocks 1–6 =
the transformer layers, block 6 = the sentence embedding) and prints the pooled out-of-fold metrics
and a paired t-test of each row against the sentence embedding alone at the same (q, C). Because these
rows were read on the outer folds, they only guide the choice; the honest number is the nested CV of
``abengine ranker cv``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.embeddings import EMBEDDING_DIM, N_LAYER_BLOCKS
from engine.ranker.cv import evaluate_scorer, fold_indices
from engine.ranker.data import DEFAULT_DATA, load_experiments
from engine.ranker.embedding_cache import layer_means_cache
from engine.ranker.metrics import PerExperiment, paired_comparison, summarize
from engine.ranker.models import ArmTable, PairwiseRanker
from engine.ranker.train import reference_mean

#: (label, blocks, q, C)
ROWS = [
    ("sentence (block 6)", [6], 100, 0.1),
    ("block 0 (token embeddings)", [0], 100, 0.1),
    ("block 1", [1], 100, 0.1),
    ("block 2", [2], 100, 0.1),
    ("block 3", [3], 100, 0.1),
    ("block 4", [4], 100, 0.1),
    ("block 5", [5], 100, 0.1),
    ("sentence (block 6)", [6], 300, 0.01),
    ("blocks 1-6", [1, 2, 3, 4, 5, 6], 300, 0.01),
    ("all 7 blocks (the engine's features)", list(range(N_LAYER_BLOCKS)), 300, 0.01),
]


def oof(arms: ArmTable, exps: list, folds: list[np.ndarray], q: int, C: float) -> list[PerExperiment]:
    out: dict[int, PerExperiment] = {}
    for held in folds:
        tr = arms.subset(~np.isin(arms.group, held))
        scorer = PairwiseRanker(q=q, C=C).fit(tr, reference_mean(tr.E))
        out.update(zip(held, evaluate_scorer(scorer, arms, exps, held), strict=True))
    return [out[k] for k in range(len(exps))]


def main() -> None:
    exps = load_experiments(DEFAULT_DATA).experiments
    full = ArmTable.build(exps, layer_means_cache(show_progress=True).encode)
    folds = fold_indices(exps, 5, 0)
    baseline: dict[tuple[int, float], list[PerExperiment]] = {}
    print(f"{'features':38s} {'q':>4s} {'C':>5s}  spearman  pairwise  top1   vs sentence (spearman)")
    with threadpool_limits(2):
        for label, blocks, q, C in ROWS:
            cols = np.concatenate([np.arange(b * EMBEDDING_DIM, (b + 1) * EMBEDDING_DIM) for b in blocks])
            arms = ArmTable(
                full.texts,
                full.E[:, cols],
                full.S,
                full.ctr,
                full.impressions,
                full.clicks,
                full.group,
                full.test,
            )
            rows = oof(arms, exps, folds, q, C)
            if blocks == [6]:
                baseline[(q, C)] = rows
            s = summarize(rows)
            cmp = paired_comparison(baseline[(q, C)], rows, "spearman")
            print(
                f"{label:38s} {q:4d} {C:5g}  {s['spearman_mean']:.4f}    {s['pairwise_accuracy']:.4f}  "
                f"{s['top1']:.4f}  {cmp['diff']:+.4f} ± {cmp['diff_se']:.4f} (p {cmp['p_value']:.2g})",
                flush=True,
            )


if __name__ == "__main__":
    main()
