"""Rankers: linear scoring functions of headline embeddings (and style), fitted within experiments.

Every ranker here ends as one :class:`LinearScorer`: ``score(t) = (φ(t) − μ)·w + z(style(t))·b``,
φ(t) the text's MiniLM *layer means* (:meth:`engine.embeddings.Embedder.encode_layers`: the
mean-pooled state of each of the 7 layers, the last block being the sentence embedding).
Scores are only meaningful *relative to other arms of the same experiment*:
all fitting removes experiment fixed effects, so no absolute CTR is ever predicted.

* :class:`PaperRanker` — Algorithm 1 of the experimentation-accelerator method, on the
  sentence embedding alone (φ's last block): centre on a reference corpus mean μ, PCA to q
  components, ridge-regularised least squares of CTR on the components after
  within-experiment demeaning (fixed effects). ``w = Πᵀβ̂`` re-expresses it in embedding space
  (zero on the other blocks).
* :class:`PairwiseRanker` — the improvement kept by grouped CV: a pairwise
  logistic (RankNet-style, linear) objective on within-experiment pairs of arms,
  each pair weighted by how surely its order was measured (z-statistic of the
  CTR difference, capped), on PCA components of all of φ plus standardized style features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge

from engine.embeddings import sentence_columns
from engine.ranker.data import Experiment
from engine.ranker.style import style_matrix


@dataclass
class ArmTable:
    """All arms of a list of experiments as aligned arrays (the training design)."""

    texts: list[str]
    E: np.ndarray  # (n, d) text features: MiniLM layer means (or any embedding, in tests)
    S: np.ndarray  # (n, k) style features
    ctr: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    group: np.ndarray  # experiment index per arm
    test: np.ndarray  # clickability_test_id per arm (CV grouping)

    def __post_init__(self) -> None:
        n = len(self.texts)
        for name in ("E", "S", "ctr", "impressions", "clicks", "group", "test"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ArmTable.{name} has {len(getattr(self, name))} rows, expected {n}")

    @classmethod
    def build(cls, experiments: Sequence[Experiment], embed: Any) -> ArmTable:
        """``embed(texts) -> (n, d)`` array, e.g. an :class:`EmbeddingCache`'s ``encode``."""
        texts = [h for e in experiments for h in e.headlines]
        return cls(
            texts=texts,
            E=np.asarray(embed(texts), dtype=np.float64) if texts else np.zeros((0, 0)),
            S=style_matrix(texts),
            ctr=np.concatenate([e.ctr for e in experiments]) if texts else np.zeros(0),
            impressions=np.concatenate([e.impressions for e in experiments]) if texts else np.zeros(0),
            clicks=np.concatenate([e.clicks for e in experiments]) if texts else np.zeros(0),
            group=np.repeat(np.arange(len(experiments)), [len(e) for e in experiments]),
            test=np.array([e.test_id for e in experiments for _ in e.headlines]),
        )

    def subset(self, mask: np.ndarray) -> ArmTable:
        idx = np.flatnonzero(mask)
        return ArmTable(
            [self.texts[i] for i in idx],
            self.E[idx],
            self.S[idx],
            self.ctr[idx],
            self.impressions[idx],
            self.clicks[idx],
            self.group[idx],
            self.test[idx],
        )


def demean_within(X: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Subtract each group's mean from its rows: the experiment fixed-effects transform."""
    _, inv, counts = np.unique(group, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), *X.shape[1:]))
    np.add.at(sums, inv, X)
    return X - (sums / counts.reshape((-1,) + (1,) * (X.ndim - 1)))[inv]


@dataclass
class LinearScorer:
    """The fitted ranker: relative scores ``(E − μ)·w_emb + ((S − m)/s)·w_style``."""

    name: str
    mu: np.ndarray
    w_emb: np.ndarray
    style_mean: np.ndarray
    style_scale: np.ndarray
    w_style: np.ndarray
    hyper: dict[str, Any] = field(default_factory=dict)

    def score(self, E: np.ndarray, S: np.ndarray | None = None) -> np.ndarray:
        out = (np.asarray(E, dtype=np.float64) - self.mu) @ self.w_emb
        if S is not None and np.any(self.w_style):
            out = out + ((S - self.style_mean) / self.style_scale) @ self.w_style
        return out

    def score_texts(self, texts: Sequence[str], E: np.ndarray) -> np.ndarray:
        return self.score(E, style_matrix(texts) if np.any(self.w_style) else None)


def _style_standardizer(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = S.mean(axis=0)
    s = S.std(axis=0)
    return m, np.where(s > 0, s, 1.0)


@dataclass
class PaperRanker:
    """Algorithm 1: μ-centring, PCA(q), ridge on within-experiment demeaned CTR (sentence embedding only)."""

    q: int = 50
    alpha: float = 1e-3
    name: str = "paper"

    def fit(self, arms: ArmTable, mu: np.ndarray) -> LinearScorer:
        cols = sentence_columns(arms.E.shape[1])
        X = (arms.E - mu)[:, cols]
        pca = PCA(n_components=min(self.q, X.shape[1], len(X) - 1), svd_solver="covariance_eigh").fit(X)
        Z = demean_within(pca.transform(X), arms.group)
        y = demean_within(arms.ctr, arms.group)
        beta = Ridge(alpha=self.alpha, fit_intercept=False).fit(Z, y).coef_
        w = np.zeros(arms.E.shape[1])
        w[cols] = pca.components_.T @ beta
        k = arms.S.shape[1]
        return LinearScorer(
            self.name,
            mu,
            w,
            np.zeros(k),
            np.ones(k),
            np.zeros(k),
            {"q": self.q, "alpha": self.alpha},
        )


def within_pairs(arms: ArmTable, max_pairs_per_experiment: int = 45) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of arms of the same experiment with different CTR."""
    order = np.argsort(arms.group, kind="stable")
    bounds = np.flatnonzero(np.diff(arms.group[order])) + 1
    ii, jj = [], []
    for members in np.split(order, bounds):
        i, j = np.triu_indices(len(members), k=1)
        keep = arms.ctr[members[i]] != arms.ctr[members[j]]
        ii.append(members[i][keep][:max_pairs_per_experiment])
        jj.append(members[j][keep][:max_pairs_per_experiment])
    if not ii:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    return np.concatenate(ii), np.concatenate(jj)


def pair_z(arms: ArmTable, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Two-proportion z-statistic of CTR_i − CTR_j (pooled variance): how surely the order is known."""
    n1, n2 = arms.impressions[i].astype(float), arms.impressions[j].astype(float)
    p = (arms.clicks[i] + arms.clicks[j]) / (n1 + n2)
    se = np.sqrt(np.maximum(p * (1 - p) * (1 / n1 + 1 / n2), 1e-12))
    return (arms.ctr[i] - arms.ctr[j]) / se


@dataclass
class PairwiseRanker:
    """Linear RankNet: logistic loss on within-experiment pair differences, noise-weighted.

    Pair weight ``min(|z|, z_cap)`` down-weights pairs whose order is within
    measurement noise (impression weighting); ``C`` is the inverse L2 strength.
    """

    q: int = 300
    C: float = 0.01
    z_cap: float = 1.0
    use_style: bool = True
    seed: int = 0
    name: str = "pairwise"

    def fit(self, arms: ArmTable, mu: np.ndarray) -> LinearScorer:
        X = arms.E - mu
        pca = PCA(n_components=min(self.q, X.shape[1], len(X) - 1), svd_solver="covariance_eigh").fit(X)
        Z_raw = pca.transform(X)
        scale0 = float(Z_raw[:, 0].std()) or 1.0  # components on a unit-ish scale, so C is comparable
        Z = Z_raw / scale0
        k = arms.S.shape[1]
        sm, ss = _style_standardizer(arms.S)
        F = np.hstack([Z, (arms.S - sm) / ss]) if self.use_style else Z
        i, j = within_pairs(arms)
        z = pair_z(arms, i, j)
        rng = np.random.default_rng(self.seed)
        flip = rng.random(len(i)) < 0.5  # balanced labels; the model has no intercept
        D = np.where(flip[:, None], F[j] - F[i], F[i] - F[j])
        label = np.where(flip, z < 0, z > 0).astype(int)
        w = np.minimum(np.abs(z), self.z_cap)
        clf = LogisticRegression(C=self.C, fit_intercept=False, max_iter=2000)
        clf.fit(D, label, sample_weight=w)
        coef = clf.coef_[0]
        w_emb = pca.components_.T @ (coef[: Z.shape[1]] / scale0)
        w_style = coef[Z.shape[1] :] if self.use_style else np.zeros(k)
        return LinearScorer(
            self.name,
            mu,
            w_emb,
            sm,
            ss,
            w_style,
            {"q": self.q, "C": self.C, "z_cap": self.z_cap, "use_style": self.use_style},
        )
