"""Classical A/B testing: a fixed traffic split that never learns.

>>> a = FixedSplitAllocator(["a", "b"], split={"a": 3, "b": 1}, seed=0)
>>> from engine.types import DecisionContext
>>> a.choose(DecisionContext("exp", "u1", ("a", "b"))).propensity in (0.75, 0.25)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from engine.allocators.counts import ArmCounts
from engine.types import Allocator, Choice, DecisionContext, Reward


class FixedSplitAllocator(Allocator):
    """Serve each variant with a fixed probability (uniform unless ``split`` says otherwise)."""

    name: ClassVar[str] = "fixed_split"

    def __init__(
        self, variant_ids: Sequence[str], *, seed: int | None = None, split: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(variant_ids, seed=seed)
        weights = np.array([float((split or {}).get(v, 1.0)) for v in self.variant_ids])
        if split is not None and set(split) != set(self.variant_ids):
            raise ValueError("split: keys must be exactly the variant ids")
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("split: weights must be >= 0 with a positive sum")
        self.weights = weights / weights.sum()
        self.counts = ArmCounts(self.variant_ids)

    def choose(self, ctx: DecisionContext) -> Choice:
        i = int(self.rng.choice(len(self.variant_ids), p=self.weights))
        return Choice(self.variant_ids[i], float(self.weights[i]))

    def update(self, rewards: Sequence[Reward]) -> None:
        if self.counts.add(rewards):
            self.version += 1

    def add_variant(self, variant_id: str) -> None:
        """A new variant gets the mean weight of the others; all weights renormalise."""
        super().add_variant(variant_id)
        self.weights = np.append(self.weights, self.weights.mean())
        self.weights /= self.weights.sum()
        self.counts.add_arm(variant_id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "allocator": self.name,
            "version": self.version,
            "variant_ids": list(self.variant_ids),
            "weights": self.weights.tolist(),
            "counts": self.counts.to_dict(),
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], *, seed: int | None = None) -> Self:
        ids = list(snapshot["variant_ids"])
        obj = cls(ids, seed=seed, split=dict(zip(ids, snapshot["weights"], strict=True)))
        obj.counts = ArmCounts.from_dict(snapshot["counts"])
        obj.version = int(snapshot["version"])
        return obj

    def summary(self) -> dict[str, dict[str, float]]:
        out = self.counts.summary()
        for v, w in zip(self.variant_ids, self.weights, strict=True):
            out[v]["share"] = float(w)
        return out
