"""Context-free policies for evaluation: uniform, a fixed arm, and vectorised Thompson sampling.

Same batched interface as :class:`~engine.perception.policy.PerceivingAllocator` (``act_batch`` /
``learn_batch``). Thompson here is a local, vectorised copy of the engine's Beta-Bernoulli Thompson
(:mod:`engine.allocators.thompson`) so that replay over 64,000 events x seeds stays fast; for rewards outside
[0, 1] (spend) it uses Gaussian posteriors instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class UniformPolicy:
    """Serve every variant with probability 1/K (the logging policy of a randomized test)."""

    name = "uniform"

    def __init__(self, n_arms: int, seed: int | None = None) -> None:
        self.K = n_arms

    def act_batch(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        return np.full((len(states), self.K), 1.0 / self.K)

    def learn_batch(self, states, actions, rewards, propensities, users=None, times=None) -> None:
        return None


class FixedArmPolicy(UniformPolicy):
    """Always serve arm ``arm`` (the "best fixed arm" in hindsight is one of these)."""

    name = "fixed"

    def __init__(self, n_arms: int, arm: int, seed: int | None = None) -> None:
        super().__init__(n_arms)
        self.arm = arm

    def act_batch(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        p = np.zeros((len(states), self.K))
        p[:, self.arm] = 1.0
        return p


class ThompsonPolicy:
    """Thompson sampling: Beta(1 + s, 1 + n - s) for rewards in [0, 1], else Normal(mean, var / n)."""

    name = "thompson"

    def __init__(self, n_arms: int, seed: int | None = None, bernoulli: bool = True) -> None:
        self.K = n_arms
        self.bernoulli = bernoulli
        self.rng = np.random.default_rng(seed)
        self.n = np.zeros(n_arms)
        self.s = np.zeros(n_arms)
        self.ss = np.zeros(n_arms)

    def act_batch(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        B = len(states)
        if self.bernoulli:
            draws = self.rng.beta(1.0 + self.s, 1.0 + self.n - self.s, size=(B, self.K))
        else:
            mean = self.s / np.maximum(self.n, 1.0)
            var = np.maximum(self.ss / np.maximum(self.n, 1.0) - mean**2, 1e-6)
            scale = np.where(self.n > 0, np.sqrt(var / np.maximum(self.n, 1.0)), 1e6)
            draws = self.rng.normal(mean, scale, size=(B, self.K))
        p = np.zeros((B, self.K))
        p[np.arange(B), draws.argmax(axis=1)] = 1.0
        return p

    def learn_batch(self, states, actions, rewards, propensities, users=None, times=None) -> None:
        a = np.asarray(actions)
        r = np.asarray(rewards, dtype=float)
        if self.bernoulli:
            r = np.clip(r, 0.0, 1.0)
        np.add.at(self.n, a, 1.0)
        np.add.at(self.s, a, r)
        np.add.at(self.ss, a, r * r)
