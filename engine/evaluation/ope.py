r"""Off-policy value estimators, one class each: IPS, SNIPS and doubly robust (DR).

For logged triples ``(x_i, a_i, r_i)`` with logging propensity ``mu_i`` and a target policy ``pi(.|x)``,
with importance weight ``w_i = pi(a_i|x_i) / mu_i``:

* IPS (Horvitz-Thompson):   ``V = 1/n sum_i w_i r_i``
* SNIPS (self-normalised):  ``V = sum_i w_i r_i / sum_i w_i``
* DR (Dudik, Langford, Li 2011): ``V = 1/n sum_i [ sum_a pi(a|x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i)) ]``
  with a reward model ``q`` fitted on other data (:func:`fit_reward_model`).

Each returns an :class:`Estimate` with a standard error from the per-row terms (delta method for SNIPS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    stderr: float


def _check(actions: np.ndarray, rewards: np.ndarray, propensities: np.ndarray, target: np.ndarray) -> None:
    n = len(actions)
    if not (len(rewards) == len(propensities) == len(target) == n):
        raise ValueError(
            "actions, rewards, propensities and target probabilities need the same number of rows"
        )
    if target.ndim != 2 or (n and actions.max() >= target.shape[1]):
        raise ValueError("target must be (n, n_actions) and cover every logged action")
    if n and not np.all(propensities > 0):
        raise ValueError(f"row {int(np.flatnonzero(propensities <= 0)[0])}: logging propensity must be > 0")


def _weights(actions, propensities, target) -> np.ndarray:
    return target[np.arange(len(actions)), actions] / propensities


class IPS:
    """Inverse propensity scoring: unbiased when ``mu`` is right, high variance when weights are large."""

    name = "ips"

    def estimate(self, actions, rewards, propensities, target, q_hat=None) -> Estimate:
        _check(actions, rewards, propensities, target)
        t = _weights(actions, propensities, target) * rewards
        return Estimate(float(t.mean()), float(t.std(ddof=1) / np.sqrt(len(t))))


class SNIPS:
    """Self-normalised IPS: a little biased, much less variance (Swaminathan & Joachims 2015)."""

    name = "snips"

    def estimate(self, actions, rewards, propensities, target, q_hat=None) -> Estimate:
        _check(actions, rewards, propensities, target)
        w = _weights(actions, propensities, target)
        if w.sum() <= 0:
            return Estimate(float("nan"), float("nan"))
        v = float((w * rewards).sum() / w.sum())
        t = w * (rewards - v) / w.mean()
        return Estimate(v, float(t.std(ddof=1) / np.sqrt(len(t))))


class DoublyRobust:
    """Doubly robust: the reward model's value plus an importance-weighted correction of its residual."""

    name = "dr"

    def estimate(self, actions, rewards, propensities, target, q_hat=None) -> Estimate:
        _check(actions, rewards, propensities, target)
        if q_hat is None or q_hat.shape != target.shape:
            raise ValueError("DR needs q_hat with the same (n, n_actions) shape as target")
        n = len(actions)
        w = _weights(actions, propensities, target)
        t = (target * q_hat).sum(axis=1) + w * (rewards - q_hat[np.arange(n), actions])
        return Estimate(float(t.mean()), float(t.std(ddof=1) / np.sqrt(n)))


ESTIMATORS = (IPS(), SNIPS(), DoublyRobust())


def fit_reward_model(
    X: np.ndarray, actions: np.ndarray, rewards: np.ndarray, n_actions: int, alpha: float = 1.0
):
    """Per-action ridge regressions ``q(x, a)`` (scikit-learn); returns ``predict(X) -> (n, n_actions)``."""
    from sklearn.linear_model import Ridge

    mean = float(rewards.mean()) if len(rewards) else 0.0
    models: list[Ridge | None] = []
    for a in range(n_actions):
        m = actions == a
        models.append(Ridge(alpha=alpha).fit(X[m], rewards[m]) if m.sum() >= 2 else None)

    def predict(Xq: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(Xq) if m is not None else np.full(len(Xq), mean) for m in models], axis=1)

    return predict
