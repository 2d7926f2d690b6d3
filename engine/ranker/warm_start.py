"""Predicted scores as a warm-start prior for online allocators.

Scores are relative, so they only tilt a shared base rate: with z_i the score
standardized within the experiment and κ the calibrated within-experiment
change of log-CTR per SD of score (fitted out-of-fold at training time),

    p_i = base_ctr · exp(κ · z_i),   Beta(1 + n₀ p_i, 1 + n₀ (1 − p_i))

for Thompson sampling (n₀ pseudo-impressions: how much the prior is trusted),
and actor initial logits κ · z_i (a softmax policy starting from the tilt).
"""

from __future__ import annotations

import numpy as np


def standardize(scores: np.ndarray) -> np.ndarray:
    """Within-experiment z-scores (zeros when all scores are equal).

    >>> standardize(np.array([1.0, 2.0, 3.0])).round(3).tolist()
    [-1.225, 0.0, 1.225]
    """
    sd = float(np.std(scores))
    return (scores - scores.mean()) / sd if sd > 0 else np.zeros_like(scores, dtype=float)


def prior_ctr(scores: np.ndarray, base_ctr: float, kappa: float) -> np.ndarray:
    """Per-arm prior mean CTR: the base rate tilted by the standardized score."""
    if not 0.0 < base_ctr < 1.0:
        raise ValueError(f"base_ctr must be in (0, 1), got {base_ctr}")
    return np.clip(base_ctr * np.exp(kappa * standardize(scores)), 1e-6, 0.999)


def beta_pseudo_counts(
    scores: np.ndarray, base_ctr: float, kappa: float, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) of the Beta prior of each arm, on top of the uniform Beta(1, 1)."""
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    p = prior_ctr(scores, base_ctr, kappa)
    return 1.0 + strength * p, 1.0 + strength * (1.0 - p)


def actor_logits(scores: np.ndarray, kappa: float) -> np.ndarray:
    """Initial logits of a softmax actor: κ·z, the predicted log-CTR tilt."""
    return kappa * standardize(scores)
