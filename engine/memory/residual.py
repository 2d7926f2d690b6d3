"""The fast memory of the actor-critic: the experiment's recent critic errors (pure: no I/O).

The critic is a slow learner: after thousands of decisions it needs thousands more to re-learn a preference
that moved. This memory keeps the last ``max_len`` residuals ``delta_i = r_i - Q(s_i, a_i)`` of learned
decisions (state, variant slot, the critic's error just before it learned the decision) and reads, for a
state ``s`` and variant ``v``, the recency- and cohort-weighted mean of the residuals of ``v``:

    k(s)   = the unit-norm categorical block of the portrait (one-hot and hashed declared categories)
    w_i    = [a_i = v] exp(beta (k(s) . k(s_i) - 1)) 2^(-age_i / halflife)      (age in records)
    mean   = sum_i w_i delta_i / (sum_i w_i + w_0)
    c(s,v) = sign(mean) max(|mean| - z se, 0)    se from the weighted variance (shrunk to a prior) and n_eff

While the critic is right the residuals average to zero and ``c`` stays at 0 (within ``z`` standard errors),
so the memory adds no noise to a stationary experiment; when preferences move, the residuals of the affected
(context, variant) cells turn significant within a few dozen of their decisions. Contexts are compared by
their declared categories (the cohorts an experimenter segments by: ``k . k'`` is the fraction of matching
categories); numeric features and free text do not define cohorts, and a schema without categories makes
every context alike (one memory per variant). A learned metric (e.g. the critic's own scores) was tried and
dropped: a slow critic does not yet tell the cohorts apart, so neither could the memory.

>>> import numpy as np
>>> mem = ResidualMemory(dim=2, max_len=100, halflife=50.0, sharpness=5.0, prior=2.0, z=2.0,
...                      key_dims=np.array([0, 1]))     # both state dims are a one-hot category
>>> S = np.tile([[1.0, 0.0]], (40, 1))
>>> mem.append(S, np.zeros(40, int), np.full(40, -0.3))  # variant 0 keeps disappointing in cohort [1, 0]
>>> mem.prepare(np.array([0, 1]))
>>> c = mem.read(np.array([[1.0, 0.0], [0.0, 1.0]]))
>>> bool(c[0, 0] < -0.2), float(c[0, 1]), bool(abs(c[1, 0]) < c[0, 0] * -0.5)
(True, 0.0, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: variance assumed for a cell with few records (a Bernoulli reward's largest)
PRIOR_VARIANCE = 0.25
#: cohorts whose single-decision read is cached between two prepares
CACHE_SIZE = 50_000


def _unit(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm cohort keys (rows) and whether each row has any declared category."""
    norm = np.linalg.norm(Z, axis=1, keepdims=True)
    ok = norm[:, 0] > 1e-6
    return np.where(ok[:, None], Z / np.maximum(norm, 1e-12), 0.0), ok


class ResidualMemory:
    """Bounded record of recent residuals with a context-aware, significance-shrunk read (see module doc)."""

    def __init__(
        self,
        dim: int,
        max_len: int,
        halflife: float,
        sharpness: float,
        prior: float,
        z: float,
        key_dims: np.ndarray | None = None,
    ) -> None:
        if max_len < 1 or halflife <= 0 or prior <= 0 or sharpness < 0 or z < 0:
            raise ValueError("max_len >= 1, halflife > 0, prior > 0, sharpness >= 0 and z >= 0 are required")
        self.dim, self.max_len = dim, max_len
        self.halflife, self.sharpness, self.prior, self.z = halflife, sharpness, prior, z
        self.key_dims = np.zeros(0, np.int64) if key_dims is None else np.asarray(key_dims, np.int64)
        if len(self.key_dims) and (self.key_dims.min() < 0 or self.key_dims.max() >= dim):
            raise ValueError(f"key_dims must index the {dim} state dims")
        self._variant_slots = np.zeros(0, np.int64)
        self.cid = np.zeros(0, np.int64)  # each record's cohort id (index into _cohorts)
        self._ids: dict[bytes, int] = {}
        self._cohorts = np.zeros((0, len(self.key_dims)), np.float32)  # distinct cohort keys, by id
        self.slots = np.zeros(0, np.int64)
        self.delta = np.zeros(0, np.float32)
        self._prepared: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._stale = False  # records changed since the last prepare
        self._cache: dict[bytes, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.delta)

    def append(self, S: np.ndarray, slots: np.ndarray, delta: np.ndarray) -> None:
        """Add residuals of learned decisions (oldest first); keeps the last ``max_len``."""
        keep = np.isfinite(delta)
        C = np.asarray(S, np.float32)[keep][:, self.key_dims]
        self.cid = np.concatenate([self.cid, self._cohort_ids(C)])[-self.max_len :]
        if len(self._cohorts) > 4 * self.max_len:  # forget cohorts no record refers to any more
            current = self._cohorts[self.cid]
            self._ids, self._cohorts = {}, self._cohorts[:0]
            self.cid = self._cohort_ids(current)
        self.slots = np.concatenate([self.slots, np.asarray(slots, np.int64)[keep]])[-self.max_len :]
        self.delta = np.concatenate([self.delta, np.asarray(delta, np.float32)[keep]])[-self.max_len :]
        self._stale = True
        self._cache = {}

    def _cohort_ids(self, C: np.ndarray) -> np.ndarray:
        out = np.empty(len(C), np.int64)
        new: list[np.ndarray] = []
        for i, row in enumerate(C):
            tag = row.tobytes()
            j = self._ids.get(tag)
            if j is None:
                j = self._ids[tag] = len(self._ids)
                new.append(row)
            out[i] = j
        if new:
            self._cohorts = np.concatenate([self._cohorts, np.stack(new)])
        return out

    def prepare(self, variant_slots: np.ndarray) -> None:
        """Cache what reads share for the current variants (call when they change, and on restore, so that
        serving never pays it): records of one cohort share their kernel weight, so they are summed per
        cohort (``sum rec``, ``sum rec delta``, ``sum rec delta^2``, ``sum rec^2`` per variant) and a read
        costs one kernel per distinct cohort, not per record; reads are then cached per cohort. After an
        :meth:`append` the next read prepares again (once per learning step, not per request)."""
        n = len(self)
        self._variant_slots = np.asarray(variant_slots, np.int64)
        self._stale = False
        self._cache = {}
        if n == 0:
            self._prepared = None
            return
        rec = 0.5 ** ((n - 1 - np.arange(n)) / self.halflife)
        A = (self.slots[:, None] == variant_slots[None, :]) * rec[:, None]  # (n, K): rec where a_i = v
        d = self.delta.astype(np.float64)[:, None]
        F = np.concatenate([A, A * d, A * d * d, A * rec[:, None]], axis=1)
        order = np.argsort(self.cid, kind="stable")
        ids = self.cid[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        agg = np.add.reduceat(F[order], starts, axis=0)  # (cohorts, 4K)
        uniq = self._cohorts[ids[starts]]
        keys, ok = _unit(uniq.astype(np.float64))
        self._prepared = (keys, ok, agg)

    def read(self, Sq: np.ndarray) -> np.ndarray:
        """Corrections ``c(s, v)`` (B, K) for states ``Sq`` (B, d); zeros when empty or not prepared."""
        if self._stale:
            self.prepare(self._variant_slots)
        if self._prepared is None:
            return np.zeros((len(Sq), len(self._variant_slots)))
        C = np.asarray(Sq)[:, self.key_dims]
        if len(C) == 1:  # the serving path: one decision, cached per cohort until the next prepare
            tag = C.astype(np.float32).tobytes()
            hit = self._cache.get(tag)
            if hit is None:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                hit = self._cache[tag] = self._read(C)
            return hit
        return self._read(C)

    def _read(self, C: np.ndarray) -> np.ndarray:
        keys, ok, agg = self._prepared  # type: ignore[misc]
        K = len(self._variant_slots)
        q, qok = _unit(C.astype(np.float64))
        sim = np.where(qok[:, None] & ok[None, :], q @ keys.T, 1.0)  # no declared category: all alike
        kern = np.exp(self.sharpness * (sim - 1.0))  # (B, cohorts)
        sums = kern @ agg[:, : 3 * K]  # sum w, sum w delta, sum w delta^2 per variant
        sw, swd, swd2 = sums[:, :K], sums[:, K : 2 * K], sums[:, 2 * K :]
        sw2 = (kern * kern) @ agg[:, 3 * K :]
        mean = swd / (sw + self.prior)
        var = np.maximum(swd2 / np.maximum(sw, 1e-12) - (swd / np.maximum(sw, 1e-12)) ** 2, 0.0)
        n_eff = sw * sw / np.maximum(sw2, 1e-12)
        var = (sw * var + self.prior * PRIOR_VARIANCE) / (sw + self.prior)  # few records: the prior's
        se = np.sqrt(var / (n_eff + self.prior))
        return np.sign(mean) * np.maximum(np.abs(mean) - self.z * se, 0.0)

    def by_variant(self, variant_slots: np.ndarray) -> np.ndarray:
        """Recency-weighted mean residual of each variant over all contexts (the drift metric)."""
        n = len(self)
        out = np.zeros(len(variant_slots))
        if n == 0:
            return out
        rec = 0.5 ** ((n - 1 - np.arange(n)) / self.halflife)
        for k, sl in enumerate(variant_slots):
            m = self.slots == sl
            if m.any():
                out[k] = float((rec[m] * self.delta[m]).sum() / (rec[m].sum() + self.prior))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (it travels in the policy snapshot): distinct cohort keys once, an id per record."""
        used, ids = np.unique(self.cid, return_inverse=True)
        return {
            "cohorts": self._cohorts[used].tolist(),
            "cohort_ids": ids.reshape(-1).tolist(),
            "slots": self.slots.tolist(),
            "delta": self.delta.tolist(),
        }

    def load(self, d: Mapping[str, Any]) -> None:
        self.slots = np.asarray(d["slots"], np.int64)
        table = np.asarray(d["cohorts"], np.float32).reshape(len(d["cohorts"]), len(self.key_dims))
        self._ids, self._cohorts = {}, self._cohorts[:0]
        self.cid = self._cohort_ids(table[np.asarray(d["cohort_ids"], np.int64)])
        self.delta = np.asarray(d["delta"], np.float32)
        self._stale = True
