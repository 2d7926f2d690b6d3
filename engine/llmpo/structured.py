"""Structured LLM-PO: a linear Bradley–Terry model shares information across pairs.

Model: μ_ij = σ(θᵀ(x_i − x_j)) with known features x_i (PCA-reduced embeddings for text
variants, parameters for generator policies). Every comparison of any pair informs θ,
so the best candidate c = argmax_i θᵀx_i can be verified without comparing it with
every j directly. Pieces, all pure numpy:

* :func:`fit_theta` — regularised logistic MLE of θ (Newton, warm-started);
* :func:`glr_linear` — Z = min_j (θ̂ᵀy_j)² / (2‖y_j‖²_{V⁻¹}), y_j = x_c − x_j;
* :func:`design` — the proportions w solving max_w min_j (θ̂ᵀy_j)² / ‖y_j‖²_{A(w)⁻¹} by Frank–Wolfe;
* :class:`StructuredLLMPO` — one run: D-tracking of w with forced exploration, stops on Z > β.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.special import expit


def pair_index(k: int) -> np.ndarray:
    """All pairs (i, j), i < j, as an (M, 2) array, M = K(K−1)/2."""
    return np.array(list(combinations(range(k), 2)), dtype=np.int64)


def fit_theta(
    z: np.ndarray, n: np.ndarray, s: np.ndarray, lam: float, theta0: np.ndarray, newton_steps: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise Σ_p [N_p log(1+e^{θᵀz_p}) − S_p θᵀz_p] + λ‖θ‖²/2; return (θ̂, V = Hessian at θ̂).

    The Hessian V = Σ_p N_p σ'(θ̂ᵀz_p) z_p z_pᵀ + λI is the Fisher information used by the stopping rule.
    """
    theta = theta0.copy()
    eye = lam * np.eye(z.shape[1])
    for _ in range(newton_steps):
        p = expit(z @ theta)
        grad = z.T @ (n * p - s) + lam * theta
        hess = (z * (n * p * (1.0 - p))[:, None]).T @ z + eye
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    p = expit(z @ theta)
    return theta, (z * (n * p * (1.0 - p))[:, None]).T @ z + eye


def glr_linear(theta: np.ndarray, v: np.ndarray, x: np.ndarray) -> tuple[int, float]:
    """(leader c = argmax θ̂ᵀx_i, Z = min_{j≠c} (θ̂ᵀy_j)² / (2 y_jᵀV⁻¹y_j)) with y_j = x_c − x_j."""
    u = x @ theta
    c = int(u.argmax())
    y = np.delete(x[c] - x, c, axis=0)
    delta = y @ theta
    norms = np.einsum("jd,dj->j", y, np.linalg.solve(v, y.T))
    return c, float(np.min(delta**2 / (2.0 * norms)))


def design(
    theta: np.ndarray, x: np.ndarray, pairs: np.ndarray, iters: int = 60, reg: float = 1e-3
) -> np.ndarray:
    """Proportions w over pairs maximising min_j (θ̂ᵀy_j)² / ‖y_j‖²_{A(w)⁻¹} (Frank–Wolfe).

    Equivalently minimise the convex h(w) = max_j ‖y_j‖²_{A(w)⁻¹} / Δ_j², A(w) = Σ_p w_p σ'_p z_p z_pᵀ + reg·I
    (reg makes the optimum unique). The max is smoothed by a softmax over j; the linear minimiser
    over the simplex is the vertex p maximising σ'_p Σ_j π_j (z_pᵀA⁻¹y_j)² / Δ_j².
    """
    z = x[pairs[:, 0]] - x[pairs[:, 1]]
    eta = z @ theta
    sig = expit(eta) * (1.0 - expit(eta))
    c = int((x @ theta).argmax())
    y = np.delete(x[c] - x, c, axis=0)
    delta2 = np.maximum((y @ theta) ** 2, 1e-12)
    m = len(pairs)
    w = np.full(m, 1.0 / m)
    zs = z * sig[:, None]
    eye = reg * np.eye(x.shape[1])
    for it in range(iters):
        a = (zs * w[:, None]).T @ z + eye
        ay = np.linalg.solve(a, y.T)  # (d, J)
        h = np.einsum("jd,dj->j", y, ay) / delta2
        pi = np.exp((h - h.max()) / (0.02 * h.max()))
        pi /= pi.sum()
        score = sig * ((z @ ay) ** 2 @ (pi / delta2))
        vertex = int(score.argmax())
        gamma = 2.0 / (it + 3.0)
        w *= 1.0 - gamma
        w[vertex] += gamma
    return w


@dataclass
class StructuredLLMPO:
    """One structured run: D-tracking of the Frank–Wolfe design, forced exploration, linear GLR stop."""

    x: np.ndarray
    lam: float = 1.0
    redesign_growth: float = 0.2
    pairs: np.ndarray = field(init=False)
    name: str = "llm_po_structured"

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[0] < 2:
            raise ValueError(f"features must be a (K, d) array with K ≥ 2, got shape {self.x.shape}")
        self.pairs = pair_index(self.x.shape[0])

    def run(
        self,
        compare: Callable[[np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray],
        *,
        beta: Callable[[int], float],
        max_steps: int,
        rng: np.random.Generator,
        block_fraction: float = 0.0,
    ) -> tuple[int, int]:
        """(stopping time, recommended candidate or −1 if the horizon came first)."""
        z = self.x[self.pairs[:, 0]] - self.x[self.pairs[:, 1]]
        m_pairs = len(self.pairs)
        n = np.zeros(m_pairs)
        s = np.zeros(m_pairs)
        theta = np.zeros(self.x.shape[1])
        w = np.full(m_pairs, 1.0 / m_pairs)
        next_design = self.x.shape[1] * 2
        t = 0
        while t < max_steps:
            eps = min(0.5, 1.0 / np.sqrt(max(t, 1)))
            target = (t + 1.0) * ((1.0 - eps) * w + eps / m_pairs)
            p = int((target - n + 1e-9 * rng.random(m_pairs)).argmax())
            m = min(max(1, int(block_fraction * t)), max_steps - t)
            wins = compare(self.pairs[p : p + 1, 0], self.pairs[p : p + 1, 1], m, rng)
            n[p] += m
            s[p] += float(wins[0])
            t += m
            theta, v = fit_theta(z, n, s, self.lam, theta, newton_steps=3)
            c, stat = glr_linear(theta, v, self.x)
            if stat > beta(t):
                return t, c
            if t >= next_design:
                w = design(theta, self.x, self.pairs)
                next_design = int(t * (1.0 + self.redesign_growth)) + 1
        return max_steps, -1


def characteristic_time_linear(theta: np.ndarray, x: np.ndarray, iters: int = 400) -> float:
    """T*_lin = min_w max_j 2‖y_j‖²_{A(w)⁻¹} / (θᵀy_j)² at the true θ (Gaussian approximation of the
    linear-BT lower bound): the structured analogue of T* = Σ_j 1/kl(μ_cj, ½)."""
    pairs = pair_index(x.shape[0])
    w = design(theta, x, pairs, iters=iters, reg=1e-9)
    z = x[pairs[:, 0]] - x[pairs[:, 1]]
    p = expit(z @ theta)
    a = (z * (w * p * (1.0 - p))[:, None]).T @ z
    c = int((x @ theta).argmax())
    y = np.delete(x[c] - x, c, axis=0)
    norms = np.einsum("jd,dj->j", y, np.linalg.solve(a, y.T))
    return float(np.max(2.0 * norms / (y @ theta) ** 2))
