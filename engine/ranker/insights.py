"""Insight, opportunity and novelty indices in the attribute space (pure maths, no I/O).

For an experiment with arms t_1..t_n and attribute scores s_i = V(φ(t_i) − μ):

* insight index   R^Ins_a = (s_best,a − s_worst,a) · β''_a — how much attribute a
  explains why the best arm beat the worst (best/worst by observed CTR when
  given, else by predicted score); the top-k positive values are the drivers.
* opportunity index, over attributes with β''_a > 0:
  R^Opp_a = rank(β''_a) − rank(e_a), e_a = max_i z(s_i,a) the strongest current
  expression (z against training arms). Ranks ascend (1 = least), so a large
  R^Opp means "important but under-expressed here".
* novelty_a = 1 − share of historical experiments in which some arm expressed
  a (z > 1): trying a rarely-tried attribute teaches more.
* coarse levels: learning potential from novelty, conversion potential from
  R^Opp and β'', each cut into terciles across the candidate attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from engine.ranker.artifact import RankerArtifact
from engine.ranker.attributes import attribute_scores


def _level(values: np.ndarray) -> list[str]:
    """'low' / 'medium' / 'high' by tercile of ``values`` among themselves."""
    if len(values) == 0:
        return []
    pct = (rankdata(values) - 0.5) / len(values)
    return ["high" if p >= 2 / 3 else "medium" if p >= 1 / 3 else "low" for p in pct]


def insight_index(art: RankerArtifact, E: np.ndarray, best: int, worst: int) -> np.ndarray:
    """R^Ins for every attribute between arms ``best`` and ``worst`` (rows of E)."""
    s = attribute_scores(E, art.V, art.scorer.mu)
    return (s[best] - s[worst]) * art.beta2


def insights(
    art: RankerArtifact,
    ids: Sequence[str],
    texts: Sequence[str],
    E: np.ndarray,
    predicted: np.ndarray,
    observed_ctr: Sequence[float] | None = None,
    *,
    top_k: int = 5,
) -> dict[str, Any]:
    """Why the best arm beats the worst: top-k positive drivers and all signed contributions."""
    if len(ids) < 2:
        raise ValueError("insights need at least two variants")
    basis = np.asarray(observed_ctr, dtype=float) if observed_ctr is not None else predicted
    if observed_ctr is not None and len(basis) != len(ids):
        raise ValueError(f"observed CTRs: got {len(basis)} values for {len(ids)} variants")
    best, worst = int(np.argmax(basis)), int(np.argmin(basis))
    r = insight_index(art, E, best, worst)
    s = attribute_scores(E, art.V, art.scorer.mu)
    order = np.argsort(-r)
    drivers = [
        {
            "attribute": art.attribute_names[a],
            "description": art.attribute_descriptions[a],
            "insight_index": round(float(r[a]), 6),
            "impact": round(float(art.beta2[a]), 6),
            "delta_expression": round(float(s[best, a] - s[worst, a]), 4),
            "direction": "more" if s[best, a] > s[worst, a] else "less",
        }
        for a in order[:top_k]
        if r[a] > 0
    ]
    return {
        "model_version": art.version,
        "basis": "observed_ctr" if observed_ctr is not None else "predicted_score",
        "best": {"variant_id": ids[best], "text": texts[best]},
        "worst": {"variant_id": ids[worst], "text": texts[worst]},
        "drivers": drivers,
        "contributions": {art.attribute_names[a]: round(float(r[a]), 6) for a in np.flatnonzero(art.beta2)},
    }


def opportunities(
    art: RankerArtifact, ids: Sequence[str], texts: Sequence[str], E: np.ndarray, *, top_k: int = 5
) -> dict[str, Any]:
    """Positive-impact attributes the current variants under-express, with novelty and levels."""
    pos = np.flatnonzero(art.beta2 > 0)
    s = attribute_scores(E, art.V, art.scorer.mu)
    z = (s - art.attr_mean) / art.attr_sd
    expression = z.max(axis=0)
    items: list[dict[str, Any]] = []
    if len(pos):
        r_opp = rankdata(art.beta2[pos]) - rankdata(expression[pos])
        novelty = 1.0 - art.hist_expressed[pos]
        learn = _level(novelty)
        convert = _level(r_opp + rankdata(art.beta2[pos]) / len(pos))
        # ties in R^Opp: the less expressed attribute first
        for k in np.lexsort((expression[pos], -r_opp))[:top_k]:
            a = pos[k]
            strongest = int(np.argmax(z[:, a]))
            items.append(
                {
                    "attribute": art.attribute_names[a],
                    "description": art.attribute_descriptions[a],
                    "opportunity_index": float(r_opp[k]),
                    "impact": round(float(art.beta2[a]), 6),
                    "current_expression_z": round(float(expression[a]), 3),
                    "strongest_variant": {"variant_id": ids[strongest], "text": texts[strongest]},
                    "novelty": round(float(novelty[k]), 3),
                    "learning_potential": learn[k],
                    "conversion_potential": convert[k],
                }
            )
    return {"model_version": art.version, "n_positive_attributes": len(pos), "opportunities": items}
