r"""LinUCB (Li, Chu, Langford, Schapire 2010), disjoint linear models: one ridge regression per variant.

For variant ``a`` with design ``A_a = I + sum x x^T`` and ``b_a = sum r x``, ``theta_a = A_a^{-1} b_a``
and the policy serves ``argmax_a theta_a . x + alpha sqrt(x^T A_a^{-1} x)`` (ties broken at random).
``x`` is the perceived state plus a constant 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from engine.perception.policy import PerceivingAllocator
from engine.perception.schema import FeatureSchema


class RidgeArms:
    """Per-variant ridge posteriors kept as ``A^{-1}`` (Sherman-Morrison updates) and ``b``."""

    def __init__(self, n_arms: int, d: int, l2: float = 1.0, forget: float = 1.0) -> None:
        self.d = d
        self.l2 = l2
        self.forget = forget
        self.A_inv = np.stack([np.eye(d) / l2 for _ in range(n_arms)])
        self.b = np.zeros((n_arms, d))

    def add_arm(self) -> None:
        self.A_inv = np.concatenate([self.A_inv, (np.eye(self.d) / self.l2)[None]])
        self.b = np.concatenate([self.b, np.zeros((1, self.d))])

    @property
    def theta(self) -> np.ndarray:
        return np.einsum("kij,kj->ki", self.A_inv, self.b)

    def update(self, X: np.ndarray, a: np.ndarray, r: np.ndarray) -> None:
        for x, k, y in zip(X, a, r, strict=True):
            Ai = self.A_inv[k]
            if self.forget < 1.0:
                Ai /= self.forget
                self.b[k] *= self.forget
            Ax = Ai @ x
            Ai -= np.outer(Ax, Ax) / (1.0 + x @ Ax)
            self.b[k] += y * x

    def to_dict(self) -> dict[str, Any]:
        return {"l2": self.l2, "forget": self.forget, "A_inv": self.A_inv.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RidgeArms:
        A_inv = np.asarray(d["A_inv"], dtype=float)
        obj = cls(A_inv.shape[0], A_inv.shape[1], float(d["l2"]), float(d["forget"]))
        obj.A_inv = A_inv
        obj.b = np.asarray(d["b"], dtype=float)
        return obj


def with_bias(states: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(states, dtype=float), np.ones((len(states), 1))], axis=1)


class LinUCBAllocator(PerceivingAllocator):
    """Disjoint LinUCB (``allocator: linucb``)."""

    name: ClassVar[str] = "linucb"

    def __init__(
        self,
        variant_ids: Sequence[str],
        *,
        seed: int | None = None,
        alpha: float = 0.5,
        l2: float = 1.0,
        schema: FeatureSchema | None = None,
        conversion_weight: float = 0.0,
        attribution_window_s: float = 86400.0,
    ) -> None:
        if alpha < 0 or l2 <= 0:
            raise ValueError("alpha must be >= 0 and l2 > 0")
        super().__init__(
            variant_ids,
            seed=seed,
            schema=schema,
            conversion_weight=conversion_weight,
            attribution_window_s=attribution_window_s,
        )
        self.alpha = alpha
        self.ridge = RidgeArms(len(variant_ids), self.state_dim + 1, l2)

    def scores(self, states: np.ndarray) -> np.ndarray:
        X = with_bias(states)
        mean = X @ self.ridge.theta.T
        width = np.sqrt(np.maximum(np.einsum("bi,kij,bj->bk", X, self.ridge.A_inv, X), 0.0))
        return mean + self.alpha * width

    def act_batch(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        s = self.scores(states)
        s = s + 1e-9 * self.rng.random(s.shape)  # random tie-break
        p = np.zeros_like(s)
        p[np.arange(len(s)), s.argmax(axis=1)] = 1.0
        return p

    def learn_batch(self, states, actions, rewards, propensities, users=None, times=None) -> None:
        self.ridge.update(with_bias(states), np.asarray(actions), np.asarray(rewards, dtype=float))
        self.version += 1

    def add_variant(self, variant_id: str) -> None:
        super().add_variant(variant_id)
        self.ridge.add_arm()

    def snapshot(self) -> dict[str, Any]:
        return {
            **self._base_snapshot(),
            "allocator": self.name,
            "alpha": self.alpha,
            "ridge": self.ridge.to_dict(),
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], *, seed: int | None = None) -> Self:
        obj = cls(
            snapshot["variant_ids"],
            seed=seed,
            alpha=float(snapshot["alpha"]),
            l2=float(snapshot["ridge"]["l2"]),
            **cls._base_kwargs(snapshot),
        )
        obj.ridge = RidgeArms.from_dict(snapshot["ridge"])
        obj.version = int(snapshot["version"])
        return obj
