"""LLM-PO unstructured rules: verify the leader against every other candidate.

Only pairs (c, j) carry information about whether c is the Condorcet winner, and
the optimal proportions are w_j ∝ 1/kl(μ_cj, ½) (docs/LLM_PO.md). Both rules
force exploration so that every (c, j) gets at least √t − (K−1)/2 comparisons,
which makes the plug-in estimates converge (Garivier & Kaufmann, 2016).
"""

from __future__ import annotations

import numpy as np

from engine.llmpo.sampling.base import DIAG, BatchState, PairRule, candidate
from engine.llmpo.stats import KL_FLOOR, kl_half


def _forced(n_row: np.ndarray, t: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(under-sampled?, argmin_j N_cj) per run, for the √t forced-exploration rule."""
    j_min = n_row.argmin(axis=1)
    n_min = n_row[np.arange(n_row.shape[0]), j_min]
    return n_min < np.sqrt(max(t, 1)) - (k - 1) / 2.0, j_min


class LLMPOTracking(PairRule):
    """D-tracking of the plug-in proportions: j = argmax_j (t_c+1)·ŵ_j − N_cj, ŵ_j ∝ 1/kl(μ̂_cj, ½)."""

    name = "llm_po_tracking"

    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        c = candidate(state)
        mu, n = state.row(c)
        a = np.arange(state.runs)
        inv = 1.0 / np.maximum(kl_half(mu), KL_FLOOR)
        inv[a, c] = 0.0
        w = inv / inv.sum(axis=1, keepdims=True)
        n_c = n.copy()
        n_c[a, c] = 0.0
        t_c = n_c.sum(axis=1, keepdims=True)
        deficit = (t_c + 1.0) * w - n_c
        deficit[a, c] = -np.inf
        j = deficit.argmax(axis=1)
        under, j_min = _forced(n, state.t, state.k)
        return c, np.where(under, j_min, j)


class LLMPOTopTwo(PairRule):
    """Top-Two: challenger j = argmin_j N_cj·kl(μ̂_cj, ½) (0 when μ̂_cj ≤ ½), the pair closest to
    blocking the stopping rule; equalising these costs is what the optimal w does."""

    name = "llm_po_top_two"

    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        c = candidate(state)
        mu, n = state.row(c)
        cost = np.where(mu > 0.5, n * kl_half(mu), 0.0)
        cost = cost + 1e-9 * rng.random(cost.shape)  # random tie-break
        cost[n >= DIAG] = np.inf
        j = cost.argmin(axis=1)
        under, j_min = _forced(n, state.t, state.k)
        return c, np.where(under, j_min, j)


class LLMPOSampling(PairRule):
    """Randomised plug-in rule: j ~ ŵ (ŵ_j ∝ 1/kl(μ̂_cj, ½)) with the same forced exploration.

    This is the rule of the live allocator, whose propensities must be real probabilities;
    it is evaluated here so its cost against tracking and Top-Two is measured, not assumed.
    """

    name = "llm_po_sampling"

    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        c = candidate(state)
        mu, n = state.row(c)
        a = np.arange(state.runs)
        inv = 1.0 / np.maximum(kl_half(mu), KL_FLOOR)
        inv[a, c] = 0.0
        cdf = np.cumsum(inv, axis=1)
        u = rng.random(state.runs) * cdf[:, -1]
        j = (cdf < u[:, None]).sum(axis=1)
        j = np.minimum(j, state.k - 1)
        j = np.where(j == c, (c + 1) % state.k, j)  # only reachable through float round-off
        under, j_min = _forced(n, state.t, state.k)
        return c, np.where(under, j_min, j)
