"""Runs the comparisons behind ``abengine eval policies``: Hillstrom replay (+ drift, + OPE), simulator, OBD.

Every policy sees the same shuffled stream per seed. Seeds run in parallel processes (``jobs``); each process
uses one torch thread.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.evaluation.datasets import LoggedBandit
from engine.evaluation.ope import ESTIMATORS, fit_reward_model
from engine.evaluation.policies import POLICY_NAMES, make_policy
from engine.evaluation.replay import clock, full_states, replay
from engine.evaluation.simulator import HeterogeneousSimulator, SimulatorConfig

#: drift scenario: from half-way, logged "Mens" events are relabelled "Womens" and vice versa
DRIFT_PERMUTATION = np.array([1, 0, 2])
CURVE_POINTS = 200


@dataclass
class SeedRun:
    """One policy on one seed: summary numbers and downsampled curves for the plots."""

    policy: str
    seed: int
    scenario: str
    mean_reward: float
    matched: int
    second_half: float = float("nan")
    regret: float = float("nan")
    regret_second_half: float = float("nan")
    curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shares: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    ope: dict[str, float] = field(default_factory=dict)


def _curve(values: np.ndarray) -> np.ndarray:
    """Cumulative mean downsampled to CURVE_POINTS."""
    if len(values) == 0:
        return np.zeros(CURVE_POINTS)
    cm = np.cumsum(values) / np.arange(1, len(values) + 1)
    return cm[np.linspace(0, len(cm) - 1, CURVE_POINTS).astype(int)]


def _shares(arms: np.ndarray, n_arms: int, bins: int = 40) -> np.ndarray:
    out = np.zeros((bins, n_arms))
    for b, chunk in enumerate(np.array_split(arms, bins)):
        if len(chunk):
            out[b] = np.bincount(chunk, minlength=n_arms) / len(chunk)
    return out


# --- worker state (set in the parent before forking) ---------------------------------------------
_CTX: dict[str, Any] = {}


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _hillstrom_seed(args: tuple[int, Sequence[str], bool, int]) -> list[SeedRun]:
    seed, policies, with_ope, block = args
    data: LoggedBandit = _CTX["data"]
    emb = _CTX["embeddings"]
    bern = bool(np.all((data.rewards == 0) | (data.rewards == 1)))
    n = len(data)
    half = n // 2
    out: list[SeedRun] = []
    order = np.random.default_rng(seed).permutation(n)
    for name in policies:
        for scenario in ("stationary", "drift"):
            pol = make_policy(name, data.arms, seed, data.schema, emb, bernoulli=bern)
            perm = (half, DRIFT_PERMUTATION) if scenario == "drift" else None
            res = replay(
                pol, data, order, np.random.default_rng(seed + 1000), block=block, arm_permutation_after=perm
            )
            out.append(
                SeedRun(
                    name,
                    seed,
                    scenario,
                    res.mean_reward,
                    len(res.rewards),
                    res.mean_after(half),
                    curve=_curve(res.rewards),
                    shares=_shares(res.arms, len(data.arms)),
                )
            )
        if with_ope:
            out.append(_ope_run(name, seed, data, emb, bern, block))
    return out


def _ope_run(name: str, seed: int, data: LoggedBandit, emb, bern: bool, block: int) -> SeedRun:
    """Train by replay on 70% of the shuffled rows, then value the frozen policy on the other 30%."""
    order = np.random.default_rng(seed).permutation(len(data))
    cut = int(0.7 * len(data))
    train, test = order[:cut], order[cut:]
    pol = make_policy(name, data.arms, seed, data.schema, emb, bernoulli=bern)
    replay(pol, data, train, np.random.default_rng(seed + 2000), block=block)
    td = data.subset(test)
    users = [f"t{i}" for i in test]
    target = np.asarray(pol.act_batch(full_states(pol, td.X, users, float("inf")), users, now=clock(cut)))  # type: ignore[attr-defined]
    q = fit_reward_model(data.X[train], data.actions[train], data.rewards[train], len(data.arms))(td.X)
    ope = {}
    for est in ESTIMATORS:
        e = est.estimate(td.actions, td.rewards, td.propensities, target, q)
        ope[est.name] = e.value
        ope[f"{est.name}_se"] = e.stderr
    return SeedRun(name, seed, "ope", float("nan"), len(test), ope=ope)


def _sim_seed(args: tuple[int, Sequence[str], dict[str, Any]]) -> list[SeedRun]:
    seed, policies, cfg_kw = args
    cfg = SimulatorConfig(**cfg_kw)
    sim = HeterogeneousSimulator(cfg, seed=seed)
    emb = _CTX["sim_embeddings"]
    out = []
    H = cfg.horizon // 2
    for name in policies:
        pol = make_policy(
            name,
            sim.variant_ids,
            seed,
            sim.schema,
            emb,
            bernoulli=False,
            conversion_weight=cfg.conversion_weight,
        )
        res = sim.run(pol, seed)
        out.append(
            SeedRun(
                name,
                seed,
                "simulator",
                float(res.rewards.mean()),
                len(res.rewards),
                float(res.rewards[H:].mean()),
                float(res.regret.sum()),
                float(res.regret[H:].sum()),
                curve=np.cumsum(res.regret)[np.linspace(0, len(res.regret) - 1, CURVE_POINTS).astype(int)],
                shares=_shares(res.arms, len(sim.variant_ids)),
            )
        )
    return out


def _checkpoint(runs: list[SeedRun]) -> None:
    """Keep finished seeds on disk (``.abengine/eval_partial/``): a run cut short still counts."""
    import pickle

    path = _CTX.get("checkpoint")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(runs))


def run_parallel(fn: Callable, tasks: list, jobs: int, progress: Callable[[int], None]) -> list[SeedRun]:
    runs: list[SeedRun] = []
    if jobs <= 1:
        _init_worker()
        for t in tasks:
            runs.extend(fn(t))
            _checkpoint(runs)
            progress(1)
        return runs
    with mp.get_context("fork").Pool(jobs, initializer=_init_worker) as pool:
        for r in pool.imap_unordered(fn, tasks):
            runs.extend(r)
            _checkpoint(runs)
            progress(1)
    return runs


def run_hillstrom(
    data: LoggedBandit,
    embeddings,
    seeds: int,
    policies: Sequence[str] = POLICY_NAMES,
    ope_seeds: int = 3,
    jobs: int = 2,
    block: int = 100,
    progress: Callable[[int], None] = lambda n: None,
    first_seed: int = 0,
) -> list[SeedRun]:
    _CTX["data"], _CTX["embeddings"] = data, embeddings
    _CTX["checkpoint"] = Path(".abengine/eval_partial/hillstrom.pkl")
    tasks = [
        (s, list(policies), s < first_seed + ope_seeds, block) for s in range(first_seed, first_seed + seeds)
    ]
    return run_parallel(_hillstrom_seed, tasks, jobs, progress)


def run_simulator(
    embeddings,
    seeds: int,
    policies: Sequence[str] = POLICY_NAMES,
    jobs: int = 2,
    config: dict[str, Any] | None = None,
    progress: Callable[[int], None] = lambda n: None,
    first_seed: int = 0,
) -> list[SeedRun]:
    _CTX["sim_embeddings"] = embeddings
    _CTX["checkpoint"] = Path(".abengine/eval_partial/simulator.pkl")
    tasks = [(s, list(policies), dict(config or {})) for s in range(first_seed, first_seed + seeds)]
    return run_parallel(_sim_seed, tasks, jobs, progress)


def best_fixed_arm_hillstrom(data: LoggedBandit, second_half_drift: bool = False) -> float:
    """Best single arm's mean reward in hindsight (logged data; with the drift relabelling if asked)."""
    means = np.array([data.rewards[data.actions == k].mean() for k in range(len(data.arms))])
    if second_half_drift:
        means = means[np.argsort(DRIFT_PERMUTATION)]
    return float(means.max())


def best_fixed_arm_simulator(
    seeds: int, config: dict[str, Any] | None = None, first_seed: int = 0
) -> tuple[float, float]:
    """Expected reward per decision of the best fixed variant (whole run, second half), mean over seeds."""
    whole, second = [], []
    for s in range(first_seed, first_seed + seeds):
        sim = HeterogeneousSimulator(SimulatorConfig(**(config or {})), seed=s)
        t = np.arange(sim.cfg.horizon)
        er = sim.expected_reward(sim.arrivals, t)
        whole.append(er.mean(axis=0).max())
        second.append(er[len(t) // 2 :].mean(axis=0).max())
    return float(np.mean(whole)), float(np.mean(second))


def summarise(
    runs: Sequence[SeedRun], scenario: str, field_name: str = "mean_reward"
) -> dict[str, np.ndarray]:
    by: dict[str, list[float]] = {}
    for r in runs:
        if r.scenario == scenario:
            by.setdefault(r.policy, []).append(getattr(r, field_name))
    return {k: np.asarray(v) for k, v in by.items()}


def policy_table(
    runs: Sequence[SeedRun],
    scenario: str,
    best_fixed: float,
    field_name: str = "mean_reward",
    extra: Callable[[str], dict[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """The JSON ``policies`` object: mean, std over seeds, lifts, matched events."""
    vals = summarise(runs, scenario, field_name)
    matched = summarise(runs, scenario, "matched")
    ab = float(vals["classical_ab"].mean()) if "classical_ab" in vals else float("nan")
    out = {}
    for name in [p for p in POLICY_NAMES if p in vals]:
        v = vals[name]
        row = {
            "mean_reward": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "lift_vs_classical_ab": float(v.mean() / ab - 1.0) if ab == ab and ab > 0 else float("nan"),
            "lift_vs_best_fixed_arm": float(v.mean() / best_fixed - 1.0),
            "matched_events": float(matched[name].mean()),
        }
        if extra is not None:
            row.update(extra(name))
        out[name] = row
    return out
