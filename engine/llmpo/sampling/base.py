"""The state every pair-sampling rule reads, and the rule interface.

State is held for a batch of independent runs at once (leading axis = run) so the
simulator can advance many runs in lockstep with a few numpy calls per step.
Diagonal convention: N_ii = S_ii = :data:`DIAG` so that μ̂_ii = 1, which lets
"c beats every j" be written as "c beats all K columns" and keeps N_cc·kl out
of every minimum.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: Pseudo-count on the diagonal (see module docstring).
DIAG = 1e18


@dataclass
class BatchState:
    """Counts of A runs over K candidates after t comparisons each.

    ``n[a, i, j]`` = comparisons of the pair (i, j) in run a (symmetric);
    ``s[a, i, j]`` = wins of i over j (ties count ½, so s_ij + s_ji = n_ij);
    ``beats[a, i]`` = #{j : μ̂_ij > ½} including j = i, so i is the empirical
    Condorcet winner ⟺ beats = K.
    """

    n: np.ndarray
    s: np.ndarray
    beats: np.ndarray
    t: int = 0

    @classmethod
    def empty(cls, runs: int, k: int) -> BatchState:
        if k < 2:
            raise ValueError(f"need at least two candidates, got {k}")
        n = np.zeros((runs, k, k))
        s = np.zeros((runs, k, k))
        idx = np.arange(k)
        n[:, idx, idx] = DIAG
        s[:, idx, idx] = DIAG
        return cls(n=n, s=s, beats=np.ones((runs, k), dtype=np.int64))

    @property
    def runs(self) -> int:
        return self.n.shape[0]

    @property
    def k(self) -> int:
        return self.n.shape[1]

    def mu_hat(self) -> np.ndarray:
        """μ̂_ij = S_ij / N_ij, and ½ for pairs never compared."""
        return np.divide(self.s, self.n, out=np.full_like(self.s, 0.5), where=self.n > 0)

    def leader(self) -> np.ndarray:
        """Index of the empirical Condorcet winner of each run, −1 where there is none."""
        best = self.beats.argmax(axis=1)
        return np.where(self.beats.max(axis=1) == self.k, best, -1)

    def row(self, c: np.ndarray, runs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(μ̂_c·, N_c·) of candidate c[a] in each run a (shape (A, K))."""
        runs = np.arange(self.runs) if runs is None else runs
        n = self.n[runs, c]
        s = self.s[runs, c]
        return np.divide(s, n, out=np.full_like(s, 0.5), where=n > 0), n

    def record(self, i: np.ndarray, j: np.ndarray, x: np.ndarray, m: int = 1) -> None:
        """Add m comparisons of i[a] vs j[a] per run, of which i won x[a] (ties count ½)."""
        a = np.arange(self.runs)
        n_old = self.n[a, i, j]
        sij = self.s[a, i, j]
        old_i = sij > n_old / 2.0
        old_j = (n_old - sij) > n_old / 2.0
        nij = n_old + m
        sij = sij + x
        sji = nij - sij
        self.n[a, i, j] = nij
        self.n[a, j, i] = nij
        self.s[a, i, j] = sij
        self.s[a, j, i] = sji
        self.beats[a, i] += (sij > nij / 2.0).astype(np.int64) - old_i
        self.beats[a, j] += (sji > nij / 2.0).astype(np.int64) - old_j
        self.t += m

    def record_counts(self, counts: np.ndarray, wins: np.ndarray) -> None:
        """Add many comparisons at once: ``counts[a, p]`` of pair p (upper triangle order) with
        ``wins[a, p]`` won by its first member; used by non-adaptive rules in block mode."""
        iu, ju = np.triu_indices(self.k, 1)
        self.n[:, iu, ju] += counts
        self.n[:, ju, iu] += counts
        self.s[:, iu, ju] += wins
        self.s[:, ju, iu] += counts - wins
        self.beats = (self.s > self.n / 2.0).sum(axis=2)
        self.t += int(counts[0].sum())

    def keep(self, mask: np.ndarray) -> None:
        """Drop the runs where ``mask`` is False (they have stopped)."""
        self.n = self.n[mask]
        self.s = self.s[mask]
        self.beats = self.beats[mask]


class PairRule(abc.ABC):
    """Chooses the next pair (i, j), i ≠ j, for every run of a batch."""

    name: ClassVar[str]
    #: Non-adaptive rules spread a block of m comparisons over pairs exactly as m single steps would.
    spreads_blocks: ClassVar[bool] = False

    def choose_block(self, state: BatchState, m: int, rng: np.random.Generator) -> np.ndarray:
        """Counts (A, K(K−1)/2) of the next m comparisons per pair (upper-triangle order)."""
        raise NotImplementedError(f"{self.name} does not spread blocks")

    @abc.abstractmethod
    def choose(self, state: BatchState, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Arrays i, j of shape (A,) with i[a] ≠ j[a]."""


def ucb_candidate(state: BatchState, runs: np.ndarray) -> np.ndarray:
    """argmax_i min_{j≠i} UCB_ij for the given runs: a sane guess while no Condorcet winner exists.

    UCB_ij = μ̂_ij + sqrt(log t / (2 N_ij)) (Hoeffding), 1 for pairs never compared.
    """
    n = state.n[runs]
    s = state.s[runs]
    mu = np.divide(s, n, out=np.full_like(s, 0.5), where=n > 0)
    bonus = np.sqrt(np.log(max(state.t, 2)) / (2.0 * np.maximum(n, 1e-12)))
    ucb = np.where(n > 0, np.minimum(mu + bonus, 1.0), 1.0)
    return ucb.min(axis=2).argmax(axis=1)


def candidate(state: BatchState) -> np.ndarray:
    """The leader where one exists, else :func:`ucb_candidate`."""
    c = state.leader()
    none = np.flatnonzero(c < 0)
    if none.size:
        c[none] = ucb_candidate(state, none)
    return c
