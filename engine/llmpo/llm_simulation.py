"""One LLM-PO experiment whose comparisons come from a judge (an LLM simulating personas).

Each step picks a pair with the LLM-PO rule, draws a persona uniformly, asks the judge,
logs the comparison (one JSON object per line) and stops when Z_t > β(t, δ) or the
budget of judge calls is spent. The result carries the evidence: leader, Z_t, β and
μ̂, N for every pair with the leader.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine.llmpo.judge import Judge
from engine.llmpo.sampling import LLMPOTopTwo
from engine.llmpo.sampling.base import BatchState, PairRule
from engine.llmpo.simulate import glr_leader
from engine.llmpo.stats import ThresholdName, threshold

OUTCOME = {"a": 1.0, "b": 0.0, "tie": 0.5}


def run_with_judge(
    candidates: Sequence[str],
    personas: Sequence[str],
    judge: Judge,
    *,
    delta: float,
    budget: int,
    seed: int,
    threshold_name: ThresholdName = "provable",
    rule: PairRule | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    tick: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run until identification or ``budget`` judge calls; return the winner (or None) with evidence."""
    k = len(candidates)
    if k < 2:
        raise ValueError(f"need at least two candidates, got {k}")
    if len(set(candidates)) != k:
        raise ValueError("candidates must be distinct")
    if not personas:
        raise ValueError("need at least one persona")
    if budget < 1:
        raise ValueError(f"budget must be ≥ 1, got {budget}")
    rule = rule or LLMPOTopTwo()
    rng = np.random.default_rng(seed)
    beta_fn = threshold(threshold_name)
    state = BatchState.empty(1, k)
    c, z = np.array([-1]), np.zeros(1)
    while state.t < budget:
        i, j = rule.choose(state, rng)
        persona = personas[int(rng.integers(len(personas)))]
        verdict = judge.judge(persona, candidates[int(i[0])], candidates[int(j[0])])
        state.record(i, j, np.array([OUTCOME[verdict]]))
        c, z = glr_leader(state)
        beta = float(beta_fn(state.t, delta, k))
        if log is not None:
            log(
                {
                    "t": state.t,
                    "a": candidates[int(i[0])],
                    "b": candidates[int(j[0])],
                    "winner": verdict,
                    "persona": persona,
                    "z": float(z[0]),
                    "beta": beta,
                    **getattr(judge, "last", {}),
                }
            )
        if tick is not None:
            tick(1)
        if z[0] > beta:
            break
    beta = float(beta_fn(max(state.t, 1), delta, k))
    leader = int(c[0])
    evidence = {}
    if leader >= 0:
        for j in range(k):
            if j != leader:
                n = float(state.n[0, leader, j])
                evidence[candidates[j]] = {"n": n, "mu_hat": float(state.s[0, leader, j] / n) if n else None}
    return {
        "identified": bool(z[0] > beta),
        "winner": candidates[leader] if z[0] > beta else None,
        "leader": candidates[leader] if leader >= 0 else None,
        "z": float(z[0]),
        "beta": beta,
        "delta": delta,
        "comparisons": state.t,
        "budget": budget,
        "evidence_vs_leader": evidence,
    }
