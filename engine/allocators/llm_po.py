"""LLM-PO as a live allocator: serve the members of scheduled pairs, stop with confidence 1−δ.

Each scheduled pair (c, j) is served to two different requests, one member each.
A *comparison* is formed from the two decisions' rewards: higher reward wins, equal
rewards tie (half a win). The pair is drawn at random from the plug-in optimal
proportions w_j ∝ 1/kl(μ̂_cj, ½) (with √t forced exploration), so every served
variant has a known propensity. Once min_j N_cj·kl(μ̂_cj, ½) > β(t, δ) the leader c
is identified; by default the allocator then serves it to everyone.

Pairing rule (rewards carry a ``decision_id`` that :meth:`choose` never sees): the
first reward of an unseen decision for variant v is matched, first in first out, to the
oldest served slot of v still waiting for a decision. A pair is *closed* when both of
its decisions are known and either both got a positive reward (a click or a conversion
with value > 0: nothing can change the order any more) or the attribution window has
passed for both (clock = the latest ``event_time`` seen: pure logic, no wall clock).
Reward of a decision = 1[clicked] + conversion_weight · Σ conversion values; an
impression alone is a provisional 0.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np

from engine.llmpo.stats import KL_FLOOR, ThresholdName, kl_half, threshold
from engine.types import Allocator, Choice, DecisionContext, Reward


class LLMPOAllocator(Allocator):
    """Fixed-confidence best-variant identification from paired rewards (see module docstring)."""

    name: ClassVar[str] = "llm_po"

    def __init__(
        self,
        variant_ids: Sequence[str],
        *,
        seed: int | None = None,
        delta: float = 0.05,
        threshold_name: ThresholdName = "provable",
        serve_winner_after_identification: bool = True,
        attribution_window_s: float = 86400.0,
        conversion_weight: float = 1.0,
    ) -> None:
        if len(variant_ids) < 2:
            raise ValueError(
                f"llm_po compares variants in pairs and needs at least two variants, got {len(variant_ids)}"
            )
        super().__init__(variant_ids, seed=seed)
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if attribution_window_s <= 0:
            raise ValueError(f"attribution_window_s must be positive, got {attribution_window_s}")
        threshold(threshold_name)  # validates the name
        self.delta = delta
        self.threshold_name: ThresholdName = threshold_name
        self.serve_winner_after_identification = serve_winner_after_identification
        self.attribution_window_s = attribution_window_s
        self.conversion_weight = conversion_weight
        k = len(self.variant_ids)
        self.n = np.zeros((k, k))
        self.s = np.zeros((k, k))
        self.winner: int | None = None
        self.clock = -math.inf
        self._next_slot = 0
        self._to_serve: deque[tuple[int, int]] = deque()  # (slot, variant index) not yet served
        self._slots: dict[int, dict[str, Any]] = {}  # slot -> {"pair": [i, j], "decisions": [id|None]*2}
        self._awaiting: dict[int, deque[int]] = {}  # variant index -> served slots waiting for a decision
        self._decisions: dict[str, dict[str, Any]] = {}  # decision id -> slot, side, reward, positive, t0

    # ------------------------------------------------------------------ statistics
    @property
    def t(self) -> int:
        """Comparisons formed so far."""
        return int(self.n.sum() / 2)

    def _mu_hat(self) -> np.ndarray:
        return np.divide(self.s, self.n, out=np.full_like(self.s, 0.5), where=self.n > 0)

    def _beta(self) -> float:
        return float(threshold(self.threshold_name)(max(self.t, 1), self.delta, len(self.variant_ids)))

    def _leader(self) -> int | None:
        mu = self._mu_hat()
        off = ~np.eye(len(self.variant_ids), dtype=bool)
        hits = np.flatnonzero(((mu > 0.5) | ~off).all(axis=1))
        return int(hits[0]) if hits.size else None

    def _z(self, c: int | None) -> float:
        if c is None:
            return 0.0
        mask = np.arange(len(self.variant_ids)) != c
        return float(np.min(self.n[c, mask] * kl_half(self._mu_hat()[c, mask])))

    def _candidate(self) -> int:
        """Leader, else argmax_i min_j UCB_ij (Hoeffding bonus; 1 for unseen pairs)."""
        c = self._leader()
        if c is not None:
            return c
        bonus = np.sqrt(math.log(max(self.t, 2)) / (2.0 * np.maximum(self.n, 1e-12)))
        ucb = np.where(self.n > 0, np.minimum(self._mu_hat() + bonus, 1.0), 1.0)
        np.fill_diagonal(ucb, np.inf)
        return int(ucb.min(axis=1).argmax())

    def pair_probabilities(self) -> tuple[int, np.ndarray]:
        """(c, π) where π_j is the probability that the next scheduled pair is (c, j)."""
        c = self._candidate()
        k = len(self.variant_ids)
        mask = np.arange(k) != c
        n_c = self.n[c].copy()
        n_c[c] = np.inf
        if n_c.min() < math.sqrt(max(self.t, 1)) - (k - 1) / 2.0:  # forced exploration
            under = mask & (n_c == n_c.min())
            return c, under / under.sum()
        inv = np.where(mask, 1.0 / np.maximum(kl_half(self._mu_hat()[c]), KL_FLOOR), 0.0)
        return c, inv / inv.sum()

    # ------------------------------------------------------------------ serving
    def choose(self, ctx: DecisionContext) -> Choice:
        if self.winner is not None and self.serve_winner_after_identification:
            return Choice(self.variant_ids[self.winner], 1.0)
        if self._to_serve:
            slot, v = self._to_serve.popleft()
            self._awaiting.setdefault(v, deque()).append(slot)
            return Choice(self.variant_ids[v], 1.0)
        c, pi = self.pair_probabilities()
        j = int(self.rng.choice(len(pi), p=pi))
        slot = self._next_slot
        self._next_slot += 1
        self._slots[slot] = {"pair": [c, j], "decisions": [None, None]}
        first, second = (c, j) if self.rng.random() < 0.5 else (j, c)
        self._to_serve.append((slot, second))
        self._awaiting.setdefault(first, deque()).append(slot)
        propensity = 0.5 if first == c else 0.5 * float(pi[first])
        return Choice(self.variant_ids[first], propensity)

    # ------------------------------------------------------------------ learning
    def update(self, rewards: Sequence[Reward]) -> None:
        index = {v: i for i, v in enumerate(self.variant_ids)}
        for r in rewards:
            v = index.get(r.variant_id)
            if v is None:
                continue
            self.clock = max(self.clock, r.event_time)
            dec = self._decisions.get(r.decision_id)
            if dec is None:
                queue = self._awaiting.get(v)
                if not queue:
                    continue  # not a scheduled comparison (e.g. the winner served after identification)
                slot = queue.popleft()
                side = 0 if self._slots[slot]["pair"][0] == v else 1
                self._slots[slot]["decisions"][side] = r.decision_id
                dec = {"slot": slot, "side": side, "clicked": False, "conv": 0.0, "t0": r.decided_at}
                self._decisions[r.decision_id] = dec
            if r.kind == "click":
                dec["clicked"] = True
            elif r.kind == "conversion":
                dec["conv"] += float(r.value)
        self._close_pairs()
        if self.winner is None:
            c = self._leader()
            if c is not None and self._z(c) > self._beta():
                self.winner = c
        self.version += 1

    def _reward(self, dec: Mapping[str, Any]) -> float:
        return float(dec["clicked"]) + self.conversion_weight * dec["conv"]

    def _close_pairs(self) -> None:
        for slot in list(self._slots):
            d0, d1 = self._slots[slot]["decisions"]
            if d0 is None or d1 is None:
                continue
            a, b = self._decisions[d0], self._decisions[d1]
            both_positive = self._reward(a) > 0 and self._reward(b) > 0
            expired = self.clock >= max(a["t0"], b["t0"]) + self.attribution_window_s
            if not (both_positive or expired):
                continue
            i, j = self._slots.pop(slot)["pair"]
            ra, rb = self._reward(a), self._reward(b)
            x = 1.0 if ra > rb else 0.0 if ra < rb else 0.5
            self.n[i, j] += 1.0
            self.n[j, i] += 1.0
            self.s[i, j] += x
            self.s[j, i] += 1.0 - x
            del self._decisions[d0], self._decisions[d1]

    # ------------------------------------------------------------------ status & state
    def status(self) -> dict[str, Any]:
        """Leader, Z_t against β(t, δ), comparisons per pair, and whether the winner is identified."""
        c = self.winner if self.winner is not None else self._leader()
        k = len(self.variant_ids)
        pairs = {
            f"{self.variant_ids[i]}|{self.variant_ids[j]}": int(self.n[i, j])
            for i in range(k)
            for j in range(i + 1, k)
            if self.n[i, j] > 0
        }
        identified = self.winner is not None
        return {
            "leader": self.variant_ids[c] if c is not None else None,
            "z": self._z(c),
            "beta": self._beta(),
            "delta": self.delta,
            "comparisons": self.t,
            "samples_per_pair": pairs,
            "open_pairs": len(self._slots),
            "identified": identified,
            "winner": self.variant_ids[self.winner] if identified else None,
            "serving": "winner" if identified and self.serve_winner_after_identification else "experiment",
        }

    def summary(self) -> dict[str, dict[str, float]]:
        mu = self._mu_hat()
        k = len(self.variant_ids)
        out = {}
        for i, v in enumerate(self.variant_ids):
            others = np.arange(k) != i
            out[v] = {
                "comparisons": float(self.n[i, others].sum()),
                "wins": float(self.s[i, others].sum()),
                "beats": float(((mu[i] > 0.5) & others).sum()),
            }
        return out

    def add_variant(self, variant_id: str) -> None:
        """A new variant restarts nothing but joins the comparison; an identified winner is revoked
        (the guarantee was about the old set)."""
        super().add_variant(variant_id)
        self.n = np.pad(self.n, ((0, 1), (0, 1)))
        self.s = np.pad(self.s, ((0, 1), (0, 1)))
        self.winner = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "allocator": self.name,
            "variant_ids": list(self.variant_ids),
            "config": {
                "delta": self.delta,
                "threshold_name": self.threshold_name,
                "serve_winner_after_identification": self.serve_winner_after_identification,
                "attribution_window_s": self.attribution_window_s,
                "conversion_weight": self.conversion_weight,
            },
            "n": self.n.tolist(),
            "s": self.s.tolist(),
            "winner": self.winner,
            "clock": self.clock if math.isfinite(self.clock) else None,
            "next_slot": self._next_slot,
            "to_serve": [list(x) for x in self._to_serve],
            "slots": {str(k): v for k, v in self._slots.items()},
            "awaiting": {str(k): list(v) for k, v in self._awaiting.items()},
            "decisions": self._decisions,
            "version": self.version,
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any], *, seed: int | None = None) -> Self:
        obj = cls(snapshot["variant_ids"], seed=seed, **snapshot["config"])
        obj.n = np.asarray(snapshot["n"], dtype=float)
        obj.s = np.asarray(snapshot["s"], dtype=float)
        obj.winner = snapshot["winner"]
        obj.clock = -math.inf if snapshot["clock"] is None else float(snapshot["clock"])
        obj._next_slot = int(snapshot["next_slot"])
        obj._to_serve = deque((int(a), int(b)) for a, b in snapshot["to_serve"])
        obj._slots = {
            int(k): {"pair": list(v["pair"]), "decisions": list(v["decisions"])}
            for k, v in snapshot["slots"].items()
        }
        obj._awaiting = {int(k): deque(int(x) for x in v) for k, v in snapshot["awaiting"].items()}
        obj._decisions = {k: dict(v) for k, v in snapshot["decisions"].items()}
        obj.version = int(snapshot["version"])
        return obj
