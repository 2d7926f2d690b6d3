"""Preference instances: a matrix μ_ij = P(i beats j), optional features, and the built-in ones.

Built-ins (parameters fixed so results reproduce):

* ``synthetic-bt``: K = 16 Bradley–Terry utilities u_1 = 0, u_2 = −logit(0.57), u_j = u_2 − 0.1·(j−2);
  μ_ij = σ(u_i − u_j), so the smallest gap μ_12 − ½ is 0.07.
* ``linear-bt``: K = 32, d = 5 linear Bradley–Terry μ_ij = σ(θᵀ(x_i − x_j)); see :func:`linear_bt`.
* ``tie``: K = 2 with μ_12 = ½ exactly: no winner, every declaration is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, logit


@dataclass(frozen=True)
class Instance:
    """K candidates with preference matrix μ (μ_ij + μ_ji = 1, μ_ii = ½)."""

    name: str
    mu: np.ndarray
    labels: tuple[str, ...]
    features: np.ndarray | None = None
    description: str = ""
    notes: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = self.mu.shape[0]
        if self.mu.shape != (k, k):
            raise ValueError(f"mu must be square, got shape {self.mu.shape}")
        if k < 2:
            raise ValueError(f"an instance needs at least two candidates, got {k}")
        if len(self.labels) != k:
            raise ValueError(f"{len(self.labels)} labels for {k} candidates")
        if not np.allclose(self.mu + self.mu.T, 1.0):
            raise ValueError("mu must satisfy mu_ij + mu_ji = 1")
        if self.features is not None and self.features.shape[0] != k:
            raise ValueError(f"features has {self.features.shape[0]} rows for {k} candidates")

    @property
    def k(self) -> int:
        return self.mu.shape[0]

    def condorcet_winner(self) -> int | None:
        """The i with μ_ij > ½ for every j ≠ i, or None."""
        off = ~np.eye(self.k, dtype=bool)
        beats = ((self.mu > 0.5) | ~off).all(axis=1)
        hits = np.flatnonzero(beats)
        return int(hits[0]) if hits.size else None


def bt_matrix(u: np.ndarray) -> np.ndarray:
    """μ_ij = σ(u_i − u_j)."""
    return expit(u[:, None] - u[None, :])


def synthetic_bt() -> Instance:
    """The 16-candidate Bradley–Terry instance with smallest gap 0.07."""
    k = 16
    u = np.zeros(k)
    u[1] = -float(logit(0.57))
    u[2:] = u[1] - 0.1 * np.arange(1, k - 1)
    return Instance(
        name="synthetic-bt",
        mu=bt_matrix(u),
        labels=tuple(f"c{i}" for i in range(k)),
        description="K=16 Bradley-Terry, u1=0, u2=-logit(0.57), u_j=u2-0.1(j-2); smallest gap 0.07",
    )


def linear_bt(k: int = 32, d: int = 5, seed: int = 7) -> Instance:
    """Linear Bradley–Terry μ_ij = σ(θᵀ(x_i − x_j)), like a grid of generator policies.

    Features: 8 "prompt templates" t_m ~ N(0, I_d) (seeded) × 4 "temperatures" — candidate
    x = t_m + 0.15·τ·e, τ ∈ {0, 1, 2, 3}, e = (1, …, 1)/√d — and θ = (1.0, 0.6, −0.4, 0.3, 0.2)·scale
    rescaled so the best candidate's smallest gap μ − ½ is 0.05. Neighbouring temperatures of the
    same template are near-duplicates: cheap for a model that shares θ, expensive pair by pair.
    """
    if k % 4:
        raise ValueError(f"linear-bt needs k divisible by 4, got {k}")
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(k // 4, d))
    e = np.ones(d) / np.sqrt(d)
    x = np.concatenate([templates + 0.15 * tau * e for tau in range(4)])
    theta = np.resize(np.array([1.0, 0.6, -0.4, 0.3, 0.2]), d)
    u = x @ theta
    c = int(u.argmax())
    gap = np.min(u[c] - np.delete(u, c))
    theta = theta * float(logit(0.55)) / gap
    return Instance(
        name="linear-bt",
        mu=bt_matrix(x @ theta),
        labels=tuple(f"p{i}" for i in range(k)),
        features=x,
        description=f"K={k} linear BT, d={d}, 8 templates x 4 temperatures, seed {seed}, smallest gap 0.05",
        notes={"theta": theta.round(4).tolist()},
    )


def tie() -> Instance:
    """Two candidates in an exact tie (μ = ½): the stress test for false declarations."""
    return Instance(
        name="tie",
        mu=np.full((2, 2), 0.5),
        labels=("a", "b"),
        description="K=2, mu_12 = 0.5 exactly (no Condorcet winner)",
    )


BUILTIN = {"synthetic-bt": synthetic_bt, "linear-bt": linear_bt, "tie": tie}
