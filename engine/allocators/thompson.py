r"""Beta-Bernoulli Thompson sampling.

Each variant's success rate has a Beta posterior
:math:`\theta_k \sim \mathrm{Beta}(\alpha_0 + s_k,\ \beta_0 + n_k - s_k)` where
:math:`n_k` counts impressions and :math:`s_k` successes (clicks, or
conversions with ``metric="conversion"``). A request draws one sample per
variant and serves the argmax. An impression counts as a failure until its
click lands, so credit is provisional and corrected by the click.

The logged propensity is :math:`P(k = \arg\max_j \theta_j)`, estimated by Monte
Carlo once per posterior change (never per request).

>>> from engine.types import DecisionContext
>>> ts = ThompsonAllocator(["a", "b"], seed=1)
>>> ts.choose(DecisionContext("exp", "u", ("a", "b"))).variant_id in ("a", "b")
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Self

import numpy as np

from engine.allocators.counts import ArmCounts
from engine.types import Allocator, Choice, DecisionContext, Reward

PROPENSITY_DRAWS = 4000


class ThompsonAllocator(Allocator):
    """Thompson sampling over Beta posteriors of each variant's success rate."""

    name: ClassVar[str] = "thompson"

    def __init__(
        self,
        variant_ids: Sequence[str],
        *,
        seed: int | None = None,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        metric: Literal["click", "conversion"] = "click",
        prior_pseudo_counts: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        super().__init__(variant_ids, seed=seed)
        if prior_alpha <= 0 or prior_beta <= 0:
            raise ValueError("prior_alpha and prior_beta must be > 0")
        if metric not in ("click", "conversion"):
            raise ValueError("metric must be 'click' or 'conversion'")
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.metric = metric
        #: Optional warm start: extra (alpha, beta) per variant, e.g. from the content ranker.
        self.prior_pseudo_counts = {
            k: (float(a), float(b)) for k, (a, b) in (prior_pseudo_counts or {}).items()
        }
        self.counts = ArmCounts(self.variant_ids)
        self._propensities: np.ndarray | None = None
        self._posterior: tuple[np.ndarray, np.ndarray] | None = None

    # --- maths ------------------------------------------------------------------------
    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) arrays in ``variant_ids`` order."""
        n = np.array([self.counts.trials[v] for v in self.variant_ids], dtype=float)
        table = self.counts.successes if self.metric == "click" else self.counts.conversions
        s = np.array([table[v] for v in self.variant_ids], dtype=float)
        s = np.minimum(s, n)
        extra = np.array([self.prior_pseudo_counts.get(v, (0.0, 0.0)) for v in self.variant_ids]).reshape(
            -1, 2
        )
        return self.prior_alpha + s + extra[:, 0], self.prior_beta + (n - s) + extra[:, 1]

    def propensities(self) -> np.ndarray:
        """P(variant is the argmax of one posterior draw), by Monte Carlo (cached)."""
        if self._propensities is None:
            a, b = self.posterior()
            rng = np.random.default_rng(12345 + self.version)
            draws = rng.beta(a, b, size=(PROPENSITY_DRAWS, len(a)))
            wins = np.bincount(draws.argmax(axis=1), minlength=len(a)).astype(float)
            # never log a zero propensity for an arm that can still be drawn
            self._propensities = (wins + 1.0) / (PROPENSITY_DRAWS + len(a))
        return self._propensities

    # --- Allocator ----------------------------------------------------------------------
    def choose(self, ctx: DecisionContext) -> Choice:
        if self._posterior is None:
            self._posterior = self.posterior()
        a, b = self._posterior
        i = int(np.argmax(self.rng.beta(a, b)))
        return Choice(self.variant_ids[i], float(self.propensities()[i]))

    def update(self, rewards: Sequence[Reward]) -> None:
        if self.counts.add(rewards):
            self.version += 1
            self._invalidate()

    def _invalidate(self) -> None:
        self._propensities = None
        self._posterior = None

    def add_variant(self, variant_id: str) -> None:
        super().add_variant(variant_id)
        self.counts.add_arm(variant_id)
        self.version += 1
        self._invalidate()

    def snapshot(self) -> dict[str, Any]:
        return {
            "allocator": self.name,
            "version": self.version,
            "variant_ids": list(self.variant_ids),
            "prior_alpha": self.prior_alpha,
            "prior_beta": self.prior_beta,
            "metric": self.metric,
            "prior_pseudo_counts": {k: list(v) for k, v in self.prior_pseudo_counts.items()},
            "counts": self.counts.to_dict(),
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], *, seed: int | None = None) -> Self:
        obj = cls(
            list(snapshot["variant_ids"]),
            seed=seed,
            prior_alpha=snapshot["prior_alpha"],
            prior_beta=snapshot["prior_beta"],
            metric=snapshot["metric"],
            prior_pseudo_counts=snapshot.get("prior_pseudo_counts") or None,
        )
        obj.counts = ArmCounts.from_dict(snapshot["counts"])
        obj.version = int(snapshot["version"])
        return obj

    def summary(self) -> dict[str, dict[str, float]]:
        a, b = self.posterior()
        p = self.propensities()
        out = self.counts.summary()
        for i, v in enumerate(self.variant_ids):
            out[v]["posterior_mean"] = float(a[i] / (a[i] + b[i]))
            out[v]["prob_best"] = float(p[i])
        return out
