"""Non-adaptive baselines: every pair in turn, or a uniformly random pair."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from engine.llmpo.sampling.base import BatchState, PairRule


class RoundRobin(PairRule):
    """Cycles through all K(K−1)/2 pairs in a fixed order: the uniform design."""

    name = "round_robin"
    spreads_blocks = True

    def __init__(self) -> None:
        self.turn = 0  # decisions taken; runs advance in lockstep, so one counter serves the batch

    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        pairs = list(combinations(range(state.k), 2))
        i, j = pairs[self.turn % len(pairs)]
        self.turn += 1
        return np.full(state.runs, i), np.full(state.runs, j)

    def choose_block(self, state: BatchState, m: int, rng: np.random.Generator) -> np.ndarray:
        n_pairs = state.k * (state.k - 1) // 2
        cycles, rest = divmod(m, n_pairs)  # m steps = whole cycles + the next `rest` pairs in turn
        counts = np.full(n_pairs, float(cycles))
        counts[(self.turn + np.arange(rest)) % n_pairs] += 1.0
        self.turn += m
        return np.broadcast_to(counts, (state.runs, n_pairs)).copy()


class RandomPair(PairRule):
    """A uniformly random pair at every step."""

    name = "random_pair"
    spreads_blocks = True

    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = rng.integers(state.k, size=state.runs)
        j = (i + rng.integers(1, state.k, size=state.runs)) % state.k
        return i, j

    def choose_block(self, state: BatchState, m: int, rng: np.random.Generator) -> np.ndarray:
        n_pairs = state.k * (state.k - 1) // 2
        return rng.multinomial(m, np.full(n_pairs, 1.0 / n_pairs), size=state.runs).astype(float)
