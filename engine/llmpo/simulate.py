"""The simulation loop: run a pair-sampling rule with the GLR stopping rule until it stops.

Many independent runs advance in lockstep (one numpy call per operation for all of
them); a run leaves the batch when Z_t > β(t, δ) or at the horizon. The outcome of
a comparison comes from a :class:`Comparator`, so the same loop drives a known
preference matrix μ (simulation) or an LLM judge (:mod:`engine.llmpo.judge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.llmpo.sampling.base import BatchState, PairRule
from engine.llmpo.stats import kl_half


class Comparator(Protocol):
    """Wins of i[a] over j[a] in m comparisons, per run a (a win counts 1, a tie ½)."""

    def __call__(self, i: np.ndarray, j: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray: ...


def bernoulli_comparator(mu: np.ndarray) -> Comparator:
    """Each comparison is "i beats j" ~ Bernoulli(μ_ij) (ties folded into μ, which only adds variance)."""

    def compare(i: np.ndarray, j: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        return rng.binomial(m, mu[i, j]).astype(float)

    return compare


@dataclass(frozen=True)
class RunResults:
    """Per-run outcome of a batch: stopping time (horizon if it never stopped) and the declared winner."""

    stop: np.ndarray
    recommended: np.ndarray
    stopped: np.ndarray

    def __post_init__(self) -> None:
        if not self.stop.shape == self.recommended.shape == self.stopped.shape:
            raise ValueError("stop, recommended and stopped must have the same shape")

    def error_rate(self, winner: int | None) -> float:
        """Fraction of runs that declared a candidate other than ``winner`` (None: any declaration)."""
        wrong = self.stopped & (self.recommended != (-1 if winner is None else winner))
        return float(wrong.mean())


def glr_leader(state: BatchState) -> tuple[np.ndarray, np.ndarray]:
    """(leader c, Z_t = min_{j≠c} N_cj·kl(μ̂_cj, ½)) per run; Z = 0 where there is no leader."""
    c = state.leader()
    z = np.zeros(state.runs)
    has = np.flatnonzero(c >= 0)
    if has.size:
        mu, n = state.row(c[has], has)
        z[has] = (n * kl_half(mu)).min(axis=1)
    return c, z


def run_batch(
    rule: PairRule,
    compare: Comparator,
    k: int,
    *,
    runs: int,
    beta: Callable[[int], float],
    max_steps: int,
    rng: np.random.Generator,
    block_fraction: float = 0.0,
    on_stop: Callable[[int], None] | None = None,
) -> RunResults:
    """Run ``runs`` independent experiments until each stops (Z_t > β(t)) or reaches ``max_steps``.

    With ``block_fraction`` ρ > 0 each decision covers a block of m = max(1, ⌊ρ t⌋) comparisons:
    adaptive rules give the block to the pair they choose, non-adaptive ones (round robin, random
    pair) spread it over pairs exactly as m single steps would. The stopping rule is checked after
    each block, so the stopping time overshoots by at most ρ·t, and checking at fewer times keeps
    the rule δ-correct. ρ = 0 is step by step.
    """
    if not 0.0 <= block_fraction < 0.1:
        raise ValueError(f"block_fraction must be in [0, 0.1), got {block_fraction}")
    state = BatchState.empty(runs, k)
    alive = np.arange(runs)
    stop = np.full(runs, max_steps, dtype=np.int64)
    rec = np.full(runs, -1, dtype=np.int64)
    while alive.size and state.t < max_steps:
        m = min(max(1, int(block_fraction * state.t)), max_steps - state.t)
        if m > 1 and rule.spreads_blocks:
            counts = rule.choose_block(state, m, rng)
            iu, ju = np.triu_indices(k, 1)
            i_all, j_all = np.broadcast_to(iu, counts.shape), np.broadcast_to(ju, counts.shape)
            state.record_counts(counts, compare(i_all, j_all, counts.astype(np.int64), rng))  # type: ignore[arg-type]
        else:
            i, j = rule.choose(state, rng)
            state.record(i, j, compare(i, j, m, rng), m)
        c, z = glr_leader(state)
        done = z > beta(state.t)
        if done.any():
            stop[alive[done]] = state.t
            rec[alive[done]] = c[done]
            if on_stop is not None:
                on_stop(int(done.sum()))
            state.keep(~done)
            alive = alive[~done]
    return RunResults(stop=stop, recommended=rec, stopped=rec >= 0)
