"""Classical A/B testing: explore uniformly for a fixed sample, then commit to the observed winner.

This is what a team does without a bandit: run the test to a pre-registered size ``n_explore`` per variant,
then ship the variant with the highest mean reward to everyone. It ignores the state. By default the size
comes from the usual power analysis for a two-proportion z-test,

    n = (z_{1 - alpha/2} + z_{power})^2 * 2 p (1 - p) / (p * lift)^2,

with ``p = baseline_rate``, relative minimum detectable ``lift``, ``alpha = 0.05``, ``power = 0.8``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from engine.perception.policy import PerceivingAllocator
from engine.perception.schema import FeatureSchema


def power_sample_size(baseline_rate: float, lift: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Per-variant sample size of a two-sided two-proportion test (see module doc).

    >>> power_sample_size(0.15, 0.15)
    3954
    """
    from scipy.stats import norm

    if not 0 < baseline_rate < 1 or lift <= 0:
        raise ValueError("baseline_rate must be in (0, 1) and lift > 0")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    delta = baseline_rate * lift
    return int(np.ceil(z**2 * 2 * baseline_rate * (1 - baseline_rate) / delta**2))


class ClassicalABAllocator(PerceivingAllocator):
    """Explore-then-commit (``allocator: classical_ab``).

    >>> ab = ClassicalABAllocator(["a", "b"], n_explore=2)
    >>> ab.act_batch(np.zeros((1, 0))).tolist()
    [[0.5, 0.5]]
    >>> ab.learn_batch(np.zeros((4, 0)), np.array([0, 0, 1, 1]), np.array([0., 0., 1., 1.]), np.full(4, .5))
    >>> ab.act_batch(np.zeros((1, 0))).tolist()
    [[0.0, 1.0]]
    """

    name: ClassVar[str] = "classical_ab"

    def __init__(
        self,
        variant_ids: Sequence[str],
        *,
        seed: int | None = None,
        n_explore: int | None = None,
        baseline_rate: float = 0.15,
        min_detectable_lift: float = 0.15,
        schema: FeatureSchema | None = None,
        conversion_weight: float = 0.0,
        attribution_window_s: float = 86400.0,
    ) -> None:
        if n_explore is None:
            n_explore = power_sample_size(baseline_rate, min_detectable_lift)
        if n_explore < 1:
            raise ValueError(f"n_explore must be >= 1, got {n_explore}")
        super().__init__(
            variant_ids,
            seed=seed,
            schema=schema,
            conversion_weight=conversion_weight,
            attribution_window_s=attribution_window_s,
        )
        self.n_explore = n_explore
        self.n = np.zeros(len(variant_ids))
        self.sum_r = np.zeros(len(variant_ids))
        self.winner: int | None = None

    def act_batch(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        K = len(self.variant_ids)
        p = np.full((len(states), K), 1.0 / K)
        if self.winner is not None:
            p[:] = 0.0
            p[:, self.winner] = 1.0
        return p

    def learn_batch(self, states, actions, rewards, propensities, users=None, times=None) -> None:
        if self.winner is not None:
            return
        np.add.at(self.n, np.asarray(actions), 1.0)
        np.add.at(self.sum_r, np.asarray(actions), np.asarray(rewards, dtype=float))
        if self.n.min() >= self.n_explore:
            means = self.sum_r / self.n
            best = np.flatnonzero(means == means.max())
            self.winner = int(self.rng.choice(best))
        self.version += 1

    def add_variant(self, variant_id: str) -> None:
        super().add_variant(variant_id)
        self.n = np.append(self.n, 0.0)
        self.sum_r = np.append(self.sum_r, 0.0)
        self.winner = None  # a new variant reopens the test

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            v: {"n": float(self.n[i]), "mean": float(self.sum_r[i] / max(self.n[i], 1.0))}
            for i, v in enumerate(self.variant_ids)
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            **self._base_snapshot(),
            "allocator": self.name,
            "n_explore": self.n_explore,
            "n": self.n.tolist(),
            "sum_r": self.sum_r.tolist(),
            "winner": self.winner,
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], *, seed: int | None = None) -> Self:
        obj = cls(
            snapshot["variant_ids"],
            seed=seed,
            n_explore=int(snapshot["n_explore"]),
            **cls._base_kwargs(snapshot),
        )
        obj.n = np.asarray(snapshot["n"], dtype=float)
        obj.sum_r = np.asarray(snapshot["sum_r"], dtype=float)
        obj.winner = snapshot["winner"]
        obj.version = int(snapshot["version"])
        return obj
