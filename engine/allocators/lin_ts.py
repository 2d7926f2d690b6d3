r"""Linear Thompson sampling (Agrawal & Goyal 2013) with disjoint per-variant ridge posteriors.

Each decision draws ``theta_a ~ N(A_a^{-1} b_a, v^2 A_a^{-1})`` per variant and serves
``argmax_a theta_a . x``. The logged propensity is estimated by Monte Carlo over ``propensity_draws``
posterior draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from engine.allocators.linucb import RidgeArms, with_bias
from engine.perception.policy import PerceivingAllocator
from engine.perception.schema import FeatureSchema


class LinTSAllocator(PerceivingAllocator):
    """Linear Thompson sampling (``allocator: lin_ts``)."""

    name: ClassVar[str] = "lin_ts"

    def __init__(
        self,
        variant_ids: Sequence[str],
        *,
        seed: int | None = None,
        v: float = 0.25,
        l2: float = 1.0,
        propensity_draws: int = 0,
        schema: FeatureSchema | None = None,
        conversion_weight: float = 0.0,
        attribution_window_s: float = 86400.0,
    ) -> None:
        if v <= 0 or l2 <= 0:
            raise ValueError("v and l2 must be > 0")
        super().__init__(
            variant_ids,
            seed=seed,
            schema=schema,
            conversion_weight=conversion_weight,
            attribution_window_s=attribution_window_s,
        )
        self.v = v
        self.propensity_draws = propensity_draws
        self.ridge = RidgeArms(len(variant_ids), self.state_dim + 1, l2)
        self._chol: np.ndarray | None = None

    def _cholesky(self) -> np.ndarray:
        if self._chol is None:
            A = self.ridge.A_inv
            self._chol = np.linalg.cholesky(0.5 * (A + A.transpose(0, 2, 1)) + 1e-10 * np.eye(A.shape[1]))
        return self._chol

    def _sample_scores(self, X: np.ndarray, n: int) -> np.ndarray:
        """Scores of ``n`` posterior draws per row: (n, B, K)."""
        L = self._cholesky()
        theta = self.ridge.theta
        z = self.rng.standard_normal((n, len(X), *theta.shape))
        draws = theta[None, None] + self.v * np.einsum("kij,nbkj->nbki", L, z)
        return np.einsum("nbki,bi->nbk", draws, X)

    def act_batch(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        X = with_bias(states)
        K = len(self.variant_ids)
        if self.propensity_draws > 0:  # a probability estimate (serving logs it as the propensity)
            wins = self._sample_scores(X, self.propensity_draws).argmax(axis=2)
            p = np.stack([np.bincount(w, minlength=K) for w in wins.T]).astype(float) + 1.0
            return p / p.sum(axis=1, keepdims=True)
        a = self._sample_scores(X, 1)[0].argmax(axis=1)
        p = np.zeros((len(X), K))
        p[np.arange(len(X)), a] = 1.0
        return p

    def learn_batch(self, states, actions, rewards, propensities, users=None, times=None) -> None:
        self.ridge.update(with_bias(states), np.asarray(actions), np.asarray(rewards, dtype=float))
        self._chol = None
        self.version += 1

    def add_variant(self, variant_id: str) -> None:
        super().add_variant(variant_id)
        self.ridge.add_arm()
        self._chol = None

    def snapshot(self) -> dict[str, Any]:
        return {
            **self._base_snapshot(),
            "allocator": self.name,
            "v": self.v,
            "propensity_draws": self.propensity_draws,
            "ridge": self.ridge.to_dict(),
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], *, seed: int | None = None) -> Self:
        obj = cls(
            snapshot["variant_ids"],
            seed=seed,
            v=float(snapshot["v"]),
            l2=float(snapshot["ridge"]["l2"]),
            propensity_draws=int(snapshot["propensity_draws"]),
            **cls._base_kwargs(snapshot),
        )
        obj.ridge = RidgeArms.from_dict(snapshot["ridge"])
        obj.version = int(snapshot["version"])
        return obj
