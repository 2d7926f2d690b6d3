"""Choose which K of N generated candidates to test: predicted score balanced with diversity.

Maximal marginal relevance (Carbonell & Goldstein, 1998) picks greedily
``argmax_i (1 − λ)·rel_i − λ·max_{j∈S} cos(e_i, e_j)``, with rel the predicted
score min-max scaled to [0, 1] (the same range as cosine) and λ = ``diversity``.
λ = 0 is pure top-K by score; λ = 1 pure diversity.
"""

from __future__ import annotations

import numpy as np


def mmr(scores: np.ndarray, E: np.ndarray, k: int, diversity: float) -> list[int]:
    """Indices of the K selected candidates, in pick order.

    >>> E = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> mmr(np.array([1.0, 0.9, 0.5]), E, k=2, diversity=0.0)
    [0, 1]
    >>> mmr(np.array([1.0, 0.9, 0.5]), E, k=2, diversity=0.5)
    [0, 2]
    """
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1], got {diversity}")
    n = len(scores)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, n)
    span = float(np.ptp(scores)) if n else 0.0
    rel = (scores - scores.min()) / span if span > 0 else np.zeros(n)
    En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    sim = En @ En.T
    chosen: list[int] = []
    max_sim = np.full(n, -np.inf)
    for _ in range(k):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = (1.0 - diversity) * rel - diversity * penalty
        value[chosen] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        max_sim = np.maximum(max_sim, sim[pick])
    return chosen
