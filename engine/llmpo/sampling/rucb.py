"""Relative Upper Confidence Bound (Zoghi et al., ICML 2014), the classic dueling-bandit baseline."""

from __future__ import annotations

import numpy as np

from engine.llmpo.sampling.base import BatchState, PairRule


class RUCB(PairRule):
    """Candidate c: uniform among arms whose UCB_cj ≥ ½ for all j; opponent d = argmax_{j≠c} UCB_jc.

    UCB_ij = μ̂_ij + sqrt(α log t / N_ij) (1 when N_ij = 0). The paper's "keep the previous
    candidate" set B is left out: it does not change which pairs are informative.
    """

    name = "rucb"

    def __init__(self, alpha: float = 0.51) -> None:
        if alpha <= 0.5:
            raise ValueError(f"RUCB needs alpha > 0.5, got {alpha}")
        self.alpha = alpha

    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        mu = state.mu_hat()
        bonus = np.sqrt(self.alpha * np.log(max(state.t, 2)) / np.maximum(state.n, 1e-12))
        ucb = np.where(state.n > 0, mu + bonus, 1.0)
        idx = np.arange(state.k)
        ucb[:, idx, idx] = 0.5
        ok = (ucb >= 0.5).all(axis=2)
        ok[~ok.any(axis=1)] = True
        c = (rng.random(ok.shape) * ok).argmax(axis=1)
        a = np.arange(state.runs)
        col = ucb[a, :, c]
        col[a, c] = -np.inf
        return c, col.argmax(axis=1)
