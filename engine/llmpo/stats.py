"""Bernoulli KL divergence, GLR statistic, stopping thresholds and the oracle time.

Everything here is pure maths on numpy arrays: it is shared by the simulator, the
live allocator and the evaluation CLI so that all of them stop by the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy.optimize import brentq
from scipy.special import xlogy

ThresholdName = Literal["provable", "heuristic"]

#: Smallest kl(μ, ½) used as a weight denominator: keeps 1/kl finite when μ̂ ≈ ½.
KL_FLOOR = 1e-12


def kl_bernoulli(p: np.ndarray | float, q: np.ndarray | float) -> np.ndarray:
    """kl(p, q) = p log(p/q) + (1−p) log((1−p)/(1−q)) with 0·log 0 = 0 (q in (0, 1)).

    >>> float(kl_bernoulli(0.5, 0.5))
    0.0
    >>> round(float(kl_bernoulli(1.0, 0.5)), 6)  # log 2
    0.693147
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    return xlogy(p, p) - xlogy(p, q) + xlogy(1.0 - p, 1.0 - p) - xlogy(1.0 - p, 1.0 - q)


def kl_half(p: np.ndarray | float) -> np.ndarray:
    """kl(p, ½): the information per comparison that separates μ = p from a tie."""
    p = np.asarray(p, dtype=float)
    return xlogy(p, 2.0 * p) + xlogy(1.0 - p, 2.0 * (1.0 - p))


def beta_provable(t: float | np.ndarray, delta: float, k: int) -> np.ndarray:
    """β(t, δ) = log(K/δ) + 2 log t + log(π²/6): δ-correct for every instance (proof in docs/LLM_PO.md).

    A wrong declaration of c needs one opponent j with μ_cj ≤ ½ and N_cj·kl(μ̂_cj, ½) > β(t) ≥ β(N_cj);
    a Chernoff bound per sample size n and a union bound over n (Σ 6/(π² n²) = 1) and over the K
    candidates that could be declared give P(error) ≤ δ, with or without a Condorcet winner.
    """
    t = np.maximum(np.asarray(t, dtype=float), 1.0)
    return math.log(k / delta) + 2.0 * np.log(t) + math.log(math.pi**2 / 6.0)


def beta_heuristic(t: float | np.ndarray, delta: float, k: int) -> np.ndarray:
    """β(t, δ) = log((K−1)/δ) + 2 log(1 + log t): the usual tighter choice, δ-correct only empirically."""
    t = np.maximum(np.asarray(t, dtype=float), 1.0)
    return math.log((k - 1) / delta) + 2.0 * np.log1p(np.log(t))


def threshold(name: ThresholdName) -> Callable[[float | np.ndarray, float, int], np.ndarray]:
    """The threshold function called ``name``."""
    if name == "provable":
        return beta_provable
    if name == "heuristic":
        return beta_heuristic
    raise ValueError(f"unknown threshold {name!r} (expected 'provable' or 'heuristic')")


def glr_statistic(mu_hat_row: np.ndarray, n_row: np.ndarray, c: int) -> float:
    """Z = min_{j≠c} N_cj · kl(μ̂_cj, ½), or 0 when c does not empirically beat every j."""
    mask = np.arange(len(n_row)) != c
    if np.any(mu_hat_row[mask] <= 0.5):
        return 0.0
    return float(np.min(n_row[mask] * kl_half(mu_hat_row[mask])))


def characteristic_time(mu: np.ndarray, winner: int) -> float:
    """T* = Σ_{j≠c} 1/kl(μ_cj, ½): the verification cost per unit of log(1/δ) (Garivier–Kaufmann)."""
    mask = np.arange(mu.shape[0]) != winner
    return float(np.sum(1.0 / kl_half(mu[winner, mask])))


def optimal_proportions(mu_row: np.ndarray, c: int) -> np.ndarray:
    """w_j ∝ 1/kl(μ_cj, ½) over j ≠ c (w_c = 0), with kl floored at :data:`KL_FLOOR`."""
    inv = 1.0 / np.maximum(kl_half(mu_row), KL_FLOOR)
    inv[c] = 0.0
    return inv / inv.sum()


def oracle_time(t_star: float, delta: float, k: int, name: ThresholdName = "provable") -> float:
    """The t solving t = T*·β(t, δ): the stopping time of an oracle sampling with known w*."""
    beta = threshold(name)

    def gap(t: float) -> float:
        return t - t_star * float(beta(t, delta, k))

    hi = max(2.0, t_star)
    while gap(hi) < 0:
        hi *= 2.0
    return float(brentq(gap, 1.0, hi)) if gap(1.0) < 0 else 1.0
