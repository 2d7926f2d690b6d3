r"""REINFORCE (Williams 1992): a linear softmax policy trained by the likelihood-ratio policy gradient.

The benchmark RL method *without memory or critic*: ``pi(a|s) = (1 - K eps) softmax(theta_a . x) + eps`` and
``theta <- theta + lr * rho (r - b) grad log pi(a|s)`` with a running-mean baseline ``b`` and clipped
importance weight ``rho = min(c, pi(a|s) / mu)`` for the logged propensity ``mu``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from engine.allocators.linucb import with_bias
from engine.perception.policy import PerceivingAllocator
from engine.perception.schema import FeatureSchema


class ReinforceAllocator(PerceivingAllocator):
    """Linear-softmax REINFORCE with a baseline (``allocator: reinforce``)."""

    name: ClassVar[str] = "reinforce"

    def __init__(
        self,
        variant_ids: Sequence[str],
        *,
        seed: int | None = None,
        lr: float = 0.5,
        min_prob: float = 0.01,
        clip_rho: float = 2.0,
        baseline_rate: float = 0.01,
        schema: FeatureSchema | None = None,
        conversion_weight: float = 0.0,
        attribution_window_s: float = 86400.0,
    ) -> None:
        if lr <= 0 or not 0 <= min_prob * len(variant_ids) <= 1:
            raise ValueError("lr must be > 0 and min_prob x variants <= 1")
        super().__init__(
            variant_ids,
            seed=seed,
            schema=schema,
            conversion_weight=conversion_weight,
            attribution_window_s=attribution_window_s,
        )
        self.lr, self.min_prob, self.clip_rho, self.baseline_rate = lr, min_prob, clip_rho, baseline_rate
        self.theta = np.zeros((len(variant_ids), self.state_dim + 1))
        self.baseline = 0.0

    def _probs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = X @ self.theta.T
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        K = p.shape[1]
        return p, (1.0 - self.min_prob * K) * p + self.min_prob

    def act_batch(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        return self._probs(with_bias(states))[1]

    def learn_batch(self, states, actions, rewards, propensities, users=None, times=None) -> None:
        X = with_bias(states)
        a = np.asarray(actions)
        r = np.asarray(rewards, dtype=float)
        p, pi = self._probs(X)
        rho = np.minimum(self.clip_rho, pi[np.arange(len(a)), a] / np.asarray(propensities, dtype=float))
        adv = rho * (r - self.baseline)
        # grad of log softmax wrt theta_j: (1[j = a] - p_j) x
        g = -p
        g[np.arange(len(a)), a] += 1.0
        self.theta += self.lr * (g * adv[:, None]).T @ X / len(a)
        for ri in r:
            self.baseline += self.baseline_rate * (ri - self.baseline)
        self.version += 1

    def add_variant(self, variant_id: str) -> None:
        super().add_variant(variant_id)
        self.theta = np.concatenate([self.theta, np.zeros((1, self.theta.shape[1]))])

    def snapshot(self) -> dict[str, Any]:
        return {
            **self._base_snapshot(),
            "allocator": self.name,
            "lr": self.lr,
            "min_prob": self.min_prob,
            "clip_rho": self.clip_rho,
            "baseline_rate": self.baseline_rate,
            "theta": self.theta.tolist(),
            "baseline": self.baseline,
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], *, seed: int | None = None) -> Self:
        obj = cls(
            snapshot["variant_ids"],
            seed=seed,
            lr=float(snapshot["lr"]),
            min_prob=float(snapshot["min_prob"]),
            clip_rho=float(snapshot["clip_rho"]),
            baseline_rate=float(snapshot["baseline_rate"]),
            **cls._base_kwargs(snapshot),
        )
        obj.theta = np.asarray(snapshot["theta"], dtype=float)
        obj.baseline = float(snapshot["baseline"])
        obj.version = int(snapshot["version"])
        return obj
