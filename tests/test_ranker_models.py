"""Rankers, metrics and grouped CV on synthetic experiments with a planted signal."""

from __future__ import annotations

import numpy as np
import pytest

from engine.ranker.cv import evaluate_scorer, fold_indices
from engine.ranker.data import Experiment
from engine.ranker.metrics import paired_comparison, score_experiment, summarize
from engine.ranker.models import ArmTable, PairwiseRanker, PaperRanker, demean_within

D = 384


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Small matrices: BLAS threads only oversubscribe a shared CI machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


BASIS = np.linalg.qr(np.random.default_rng(42).normal(size=(D, 16)))[0].T  # a 16-d "topic" subspace


def _embed_factory(seed: int = 0):
    """Deterministic unit vectors per text, mostly in a 16-d subspace (stands in for MiniLM)."""
    cache: dict[str, np.ndarray] = {}

    def embed(texts):
        out = []
        for t in texts:
            if t not in cache:
                rng = np.random.default_rng([seed, *t.encode()])
                v = rng.normal(size=16) @ BASIS + 0.05 * rng.normal(size=D)
                cache[t] = v / np.linalg.norm(v)
            out.append(cache[t])
        return np.array(out)

    return embed


def synthetic(n_exp: int = 240, seed: int = 0):
    """Experiments whose log-CTR rises along a planted direction w of embedding space."""
    rng = np.random.default_rng(seed)
    embed = _embed_factory(seed)
    w = rng.normal(size=16) @ BASIS
    exps = []
    for k in range(n_exp):
        heads = tuple(f"exp{k} headline {j}" for j in range(int(rng.integers(2, 6))))
        signal = embed(heads) @ w * 1.5
        ctr = 0.02 * np.exp(signal - signal.mean())
        imps = np.full(len(heads), 20000)
        exps.append(Experiment(f"t{k // 2}", f"e{k % 2}", heads, imps, rng.binomial(imps, ctr)))
    return exps, embed


def test_demean_within_removes_group_means() -> None:
    X = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    out = demean_within(X, np.array([0, 0, 1]))
    assert np.allclose(out, [[-1, -1], [1, 1], [0, 0]])


def test_metrics_perfect_reversed_and_ties() -> None:
    e = Experiment("t", "e", ("a", "b", "c"), np.array([1000, 1000, 1000]), np.array([10, 20, 30]))
    good = score_experiment(e, np.array([1.0, 2.0, 3.0]))
    bad = score_experiment(e, np.array([3.0, 2.0, 1.0]))
    tie = score_experiment(e, np.array([1.0, 1.0, 1.0]))
    assert (good.spearman, good.top1, good.pairwise) == (1.0, 1.0, 1.0)
    assert (bad.spearman, bad.top1, bad.pairwise) == (-1.0, 0.0, 0.0)
    assert tie.top1 == pytest.approx(1 / 3) and tie.pairwise == 0.5 and np.isnan(tie.spearman)
    assert good.top1_random == pytest.approx(1 / 3)
    rep = summarize([good, bad])
    assert rep["n_experiments"] == 2 and rep["spearman_mean"] == 0.0 and rep["top1"] == 0.5
    cmp = paired_comparison([bad, bad], [good, good], "spearman")
    assert cmp["diff"] == 2.0


@pytest.mark.parametrize("fitter", [PaperRanker(q=20), PairwiseRanker(q=20, C=1.0)])
def test_rankers_recover_planted_signal_out_of_fold(fitter) -> None:
    exps, embed = synthetic()
    arms = ArmTable.build(exps, embed)
    held = fold_indices(exps, 4, seed=0)[0]
    train = arms.subset(~np.isin(arms.group, held))
    scorer = fitter.fit(train, train.E.mean(axis=0))
    rep = summarize(evaluate_scorer(scorer, arms, exps, held))
    assert rep["spearman_mean"] > 0.3
    assert rep["top1"] > rep["top1_random"] + 0.1


def test_paper_ranker_on_layer_means_uses_the_sentence_block_only() -> None:
    """Algorithm 1 stays paper-faithful on the 2,688-d features: the same fit as on the sentence embedding."""
    from engine.embeddings import LAYER_MEANS_DIM, SENTENCE_BLOCK

    exps, embed = synthetic(60)
    arms = ArmTable.build(exps, embed)
    rng = np.random.default_rng(3)
    wide = rng.normal(size=(len(arms.texts), LAYER_MEANS_DIM))  # other blocks: noise the fit must ignore
    wide[:, SENTENCE_BLOCK] = arms.E
    wide_arms = ArmTable(
        arms.texts, wide, arms.S, arms.ctr, arms.impressions, arms.clicks, arms.group, arms.test
    )
    narrow = PaperRanker(q=10).fit(arms, arms.E.mean(axis=0))
    scorer = PaperRanker(q=10).fit(wide_arms, wide.mean(axis=0))
    outside = np.ones(LAYER_MEANS_DIM, dtype=bool)
    outside[SENTENCE_BLOCK] = False
    assert not scorer.w_emb[outside].any()
    assert np.allclose(scorer.w_emb[SENTENCE_BLOCK], narrow.w_emb)
    assert np.allclose(scorer.score(wide), narrow.score(arms.E))


def test_pairwise_fit_is_deterministic() -> None:
    exps, embed = synthetic(60)
    arms = ArmTable.build(exps, embed)
    mu = arms.E.mean(axis=0)
    a = PairwiseRanker(q=10).fit(arms, mu)
    b = PairwiseRanker(q=10).fit(arms, mu)
    assert np.array_equal(a.w_emb, b.w_emb) and np.array_equal(a.w_style, b.w_style)


def test_folds_never_split_a_test() -> None:
    exps, _ = synthetic(40)
    folds = fold_indices(exps, 5, seed=1)
    owner = {}
    for k, f in enumerate(folds):
        for i in f:
            assert owner.setdefault(exps[i].test_id, k) == k
    assert sorted(np.concatenate(folds).tolist()) == list(range(40))


def test_run_cv_and_train_artifact_end_to_end_on_synthetic_data(tmp_path) -> None:
    from engine.ranker.artifact import RankerArtifact
    from engine.ranker.attributes import Attribute
    from engine.ranker.train import run_cv, train_artifact

    exps, embed = synthetic(80)
    arms = ArmTable.build(exps, embed)
    report = run_cv(exps, arms, n_splits=2, inner_splits=2)
    assert report["pairwise"]["n_experiments"] == 80
    assert report["pairwise"]["spearman_mean"] > 0.2 and report["paper"]["spearman_mean"] > 0.2
    assert {p["metric"] for p in report["paired"]} == {"spearman", "pairwise", "top1"}
    attrs = [Attribute(f"a{i}", f"attribute {i}", (f"p{i}x", f"p{i}y", f"p{i}z")) for i in range(6)]
    art = train_artifact(exps, arms, attrs, embed, seed=0)
    assert art.kappa > 0  # higher score, higher within-experiment CTR, out of fold
    assert art.V.shape == (6, D) and np.allclose(np.linalg.norm(art.V, axis=1), 1)
    back = RankerArtifact.load(art.save(tmp_path / "a.npz"))
    assert back.version == art.version and back.training_tests == art.training_tests
