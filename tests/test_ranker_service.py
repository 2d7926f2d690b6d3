"""RankerService, insights/opportunities indices, MMR, warm-start priors, artifact round trip."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from engine.ranker.artifact import RankerArtifact
from engine.ranker.attributes import attribute_scores, impact_coefficients, load_lexicon
from engine.ranker.models import LinearScorer
from engine.ranker.prioritize import mmr
from engine.ranker.service import RankerService
from engine.ranker.style import STYLE_FEATURES
from engine.ranker.warm_start import beta_pseudo_counts, standardize

D, A = 384, 6


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Small matrices: BLAS threads only oversubscribe a shared CI machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture()
def art() -> RankerArtifact:
    """A small artifact: the ranker likes attribute 0 and dislikes attribute 1."""
    rng = np.random.default_rng(0)
    V = _unit(rng.normal(size=(A, D)))
    beta2 = np.array([2.0, -1.0, 0.5, 0.0, 0.0, 0.3])
    k = len(STYLE_FEATURES)
    scorer = LinearScorer(
        "pairwise", np.zeros(D), V.T @ beta2, np.zeros(k), np.ones(k), np.zeros(k), {"q": 1}
    )
    return RankerArtifact(
        scorer=scorer,
        attribute_names=[f"attr{i}" for i in range(A)],
        attribute_descriptions=[f"Attribute {i}." for i in range(A)],
        V=V,
        beta2=beta2,
        attr_mean=np.zeros(A),
        attr_sd=np.full(A, 0.1),
        hist_expressed=np.linspace(0.1, 0.6, A),
        kappa=0.1,
        base_ctr=0.015,
        training_tests=["t1"],
        meta={"version": "test"},
    )


def _encoder(art: RankerArtifact):
    """Texts 'a<i>' point along attribute i, so expression is known exactly."""

    def encode(texts):
        out = []
        for t in texts:
            i, w = int(t[1]), float(t[3:]) if len(t) > 3 else 1.0
            rng = np.random.default_rng(len(t) + i)
            out.append(_unit(w * art.V[i] + 0.01 * rng.normal(size=D)))
        return np.array(out)

    return encode


def test_rank_orders_by_score_and_is_json(art: RankerArtifact) -> None:
    svc = RankerService(art, _encoder(art))
    ranked = svc.rank([("x", "a1"), ("y", "a0"), ("z", "a3")])
    assert [v for v, _ in ranked] == ["y", "z", "x"]
    body = svc.ranking([("x", "a1"), ("y", "a0")])
    assert body["relative"] and body["ranking"][0]["variant_id"] == "y"
    json.dumps(body)
    with pytest.raises(ValueError, match="unique"):
        svc.rank([("x", "a1"), ("x", "a0")])


def test_insights_name_the_driver_between_best_and_worst(art: RankerArtifact) -> None:
    svc = RankerService(art, _encoder(art))
    ins = svc.insights([("x", "a1"), ("y", "a0")], observed={"x": 0.01, "y": 0.03})
    assert ins["best"]["variant_id"] == "y" and ins["worst"]["variant_id"] == "x"
    assert ins["drivers"][0]["attribute"] == "attr0" and ins["drivers"][0]["direction"] == "more"
    assert all(d["insight_index"] > 0 for d in ins["drivers"])
    # x carries attr1 (negative impact): having less of it is also a positive driver for y
    assert "attr1" in [d["attribute"] for d in ins["drivers"]]
    json.dumps(ins)
    with pytest.raises(ValueError, match="missing"):
        svc.insights([("x", "a1"), ("y", "a0")], observed={"x": 0.01})


def test_opportunities_cover_positive_attributes_under_expressed(art: RankerArtifact) -> None:
    svc = RankerService(art, _encoder(art))
    opp = svc.opportunities([("x", "a0"), ("y", "a1")])
    names = [o["attribute"] for o in opp["opportunities"]]
    assert set(names) <= {"attr0", "attr2", "attr5"} and opp["n_positive_attributes"] == 3
    by = {o["attribute"]: o for o in opp["opportunities"]}
    # attr0 is the most important but also the most expressed: rank(importance) - rank(expression) = 0
    assert by["attr0"]["opportunity_index"] == 0.0 and by["attr0"]["current_expression_z"] > 5
    assert names[0] != "attr0"
    assert all(o["learning_potential"] in {"low", "medium", "high"} for o in opp["opportunities"])
    json.dumps(opp)


def test_prioritize_trades_score_for_diversity(art: RankerArtifact) -> None:
    svc = RankerService(art, _encoder(art))
    cands = [("p", "a0"), ("q", "a0 0.9"), ("r", "a2")]
    assert [c["variant_id"] for c in svc.prioritize(cands, k=2, diversity=0.0)] == ["p", "q"]
    assert [c["variant_id"] for c in svc.prioritize(cands, k=2, diversity=0.6)] == ["p", "r"]
    with pytest.raises(ValueError):
        mmr(np.zeros(2), np.eye(2), 1, 1.5)


def test_warm_start_prior_follows_scores(art: RankerArtifact) -> None:
    svc = RankerService(art, _encoder(art))
    prior = svc.warm_start_prior([("x", "a1"), ("y", "a0")], strength=100)
    v = prior["variants"]
    assert v["y"]["prior_ctr"] > art.base_ctr > v["x"]["prior_ctr"]
    assert v["y"]["alpha"] + v["y"]["beta"] == pytest.approx(102)
    assert v["y"]["logit"] > 0 > v["x"]["logit"]
    a, b = beta_pseudo_counts(np.array([1.0, 1.0]), 0.02, 0.5, 0.0)
    assert np.allclose(a, 1) and np.allclose(b, 1)
    assert np.allclose(standardize(np.array([2.0, 2.0])), 0)


def test_scoring_ten_variants_with_cached_embeddings_is_fast(art: RankerArtifact) -> None:
    variants = [(f"v{i}", f"a{i % A} {1 + i / 10}") for i in range(10)]
    cached = dict(zip([t for _, t in variants], _encoder(art)([t for _, t in variants]), strict=True))
    svc = RankerService(art, lambda ts: np.stack([cached[t] for t in ts]))
    svc.rank(variants)
    t0 = time.perf_counter()
    for _ in range(200):
        svc.rank(variants)
    per_call_ms = (time.perf_counter() - t0) / 200 * 1e3
    print(f"rank(10 variants): {per_call_ms:.3f} ms")  # measured, not asserted (shared CI machines)


def test_artifact_round_trip(art: RankerArtifact, tmp_path: Path) -> None:
    path = art.save(tmp_path / "r.npz")
    back = RankerArtifact.load(path)
    E = _encoder(art)(["a0", "a1"])
    assert np.allclose(back.scorer.score(E), art.scorer.score(E), atol=1e-5)
    assert back.attribute_names == art.attribute_names and back.version == "test"
    with pytest.raises(FileNotFoundError, match="ranker train"):
        RankerArtifact.load(tmp_path / "missing.npz")


def test_an_artifact_of_another_format_is_refused_with_the_fix(art: RankerArtifact, tmp_path: Path) -> None:
    """A format-1 artifact scored 384-d sentence embeddings: loading it must say to retrain, not mis-score."""
    import json

    path = art.save(tmp_path / "r.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    header["format"] = 1
    arrays["header"] = np.array(json.dumps(header))
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    with pytest.raises(ValueError, match=r"format 1 != 2.*ranker train"):
        RankerArtifact.load(tmp_path / "old.npz")


def test_sign_constrained_lasso_recovers_planted_impacts(art: RankerArtifact) -> None:
    beta_prime = art.V.T @ art.beta2
    beta2, lam = impact_coefficients(beta_prime, art.V)
    sigma = np.sign(art.V @ beta_prime)
    assert np.all(beta2 * sigma >= -1e-12)
    assert np.sign(beta2[0]) == 1 and np.sign(beta2[1]) == -1 and lam > 0
    s = attribute_scores(art.V, art.V, np.zeros(D))
    assert np.allclose(np.diag(s), 1.0)


def test_repo_lexicon_has_enough_attributes(tmp_path: Path) -> None:
    attrs = load_lexicon()
    assert len(attrs) >= 40 and len({a.name for a in attrs}) == len(attrs)
    for required in ("urgency", "social_proof", "curiosity_gap", "scarcity", "humor", "how_to"):
        assert required in {a.name for a in attrs}
    bad = tmp_path / "bad.yaml"
    bad.write_text("attributes:\n  - name: x\n    description: d\n    phrases: [a]\n")
    with pytest.raises(ValueError, match=r"attributes\[0\].*phrases"):
        load_lexicon(bad)
