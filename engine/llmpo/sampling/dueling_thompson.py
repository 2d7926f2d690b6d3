"""Double Thompson Sampling for dueling bandits (Wu & Liu, NeurIPS 2016), simplified."""

from __future__ import annotations

import numpy as np

from engine.llmpo.sampling.base import BatchState, PairRule


class DuelingThompson(PairRule):
    """First arm: Copeland winner of one posterior draw θ_ij ~ Beta(S_ij+1, S_ji+1);
    second arm: argmax_{j≠c} of a fresh draw θ_jc. (D-TS's RUCB pre-filter is omitted.)
    """

    name = "dueling_thompson"

    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k, runs = state.k, state.runs
        iu, ju = np.triu_indices(k, 1)
        s_up = state.s[:, iu, ju]
        s_lo = state.s[:, ju, iu]
        theta_up = rng.beta(s_up + 1.0, s_lo + 1.0)
        wins = np.zeros((runs, k))
        up_wins = (theta_up > 0.5).astype(float)
        np.add.at(wins, (slice(None), iu), up_wins)
        np.add.at(wins, (slice(None), ju), 1.0 - up_wins)
        c = (wins + 0.5 * rng.random((runs, k))).argmax(axis=1)
        a = np.arange(runs)
        s_col = state.s[a, :, c]
        s_row = state.s[a, c, :]
        theta = rng.beta(s_col + 1.0, s_row + 1.0)
        theta[a, c] = -np.inf
        return c, theta.argmax(axis=1)
