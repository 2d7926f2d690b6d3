"""``abengine eval``: offline evaluation of the allocators (tables, JSON, PNG plots)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from engine.evaluation.policies import POLICY_NAMES

DATASETS = ("hillstrom", "simulator", "obd")


@click.group("eval")
def eval_group() -> None:
    """Offline evaluation: replay on logged data, off-policy estimators, a heterogeneous-user simulator."""


def _table(policies: dict[str, dict[str, float]], extra: tuple[str, ...] = ()) -> str:
    head = f"{'policy':<24}{'mean':>9}{'std':>9}{'vs A/B':>9}{'vs best arm':>12}{'matched':>9}" + "".join(
        f"{e:>14}" for e in extra
    )
    lines = [head, "-" * len(head)]
    for name, r in policies.items():
        lines.append(
            f"{name:<24}{r['mean_reward']:>9.4f}{r['std']:>9.4f}{r['lift_vs_classical_ab']:>+9.1%}"
            f"{r['lift_vs_best_fixed_arm']:>+12.1%}{r['matched_events']:>9.0f}"
            + "".join(f"{r.get(e, float('nan')):>14.4f}" for e in extra)
        )
    return "\n".join(lines)


def _parse_policies(value: str | None) -> tuple[str, ...]:
    if not value:
        return POLICY_NAMES
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in POLICY_NAMES]
    if bad:
        raise click.BadParameter(
            f"unknown policy {', '.join(bad)}; choose from {', '.join(POLICY_NAMES)}", param_hint="--policies"
        )
    if "classical_ab" not in names:
        names = ("classical_ab", *names)
    return names


@eval_group.command("policies")
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    required=True,
    help="hillstrom: replay + drift + OPE on the e-mail campaign; simulator: heterogeneous users with "
    "drift and delayed conversions (regret); obd: verify IPS/SNIPS/DR on the Open Bandit sample.",
)
@click.option(
    "--reward",
    type=click.Choice(["visit", "spend", "click", "conversion"]),
    default="visit",
    show_default=True,
    help="Hillstrom outcome used as reward (click = visit, the e-mail click-through).",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="Shuffled streams (replay) or simulated populations, the same for every policy.",
)
@click.option(
    "--first-seed",
    type=click.IntRange(0, 10**6),
    default=0,
    show_default=True,
    help="Seeds are FIRST_SEED .. FIRST_SEED+SEEDS-1: report on seeds that tuning never looked at.",
)
@click.option(
    "--policies",
    "policies_opt",
    default=None,
    help=f"Comma-separated subset of: {', '.join(POLICY_NAMES)} (default all).",
)
@click.option(
    "--ope-seeds",
    type=click.IntRange(0, 1000),
    default=3,
    show_default=True,
    help="Hillstrom: seeds on which each final policy is also valued by IPS/SNIPS/DR on a 30% hold-out.",
)
@click.option("--jobs", type=click.IntRange(1, 64), default=2, show_default=True, help="Parallel processes.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docs/results"),
    show_default=True,
    help="Where the PNG plots and the JSON copy are written.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result object as JSON instead of tables.")
def policies_cmd(
    dataset: str,
    reward: str,
    seeds: int,
    first_seed: int,
    policies_opt: str | None,
    ope_seeds: int,
    jobs: int,
    out_dir: Path,
    as_json: bool,
) -> None:
    """Compare the allocators on DATASET with the same streams for every policy; writes plots to --out.

    The JSON object is {"dataset", "reward", "seeds", "policies": {NAME: {"mean_reward", "std",
    "lift_vs_classical_ab", "lift_vs_best_fixed_arm", "matched_events"}}} plus scenario-specific keys
    (Hillstrom: "drift_second_half" and "ope"; simulator: regret columns).
    """
    from tqdm import tqdm

    names = _parse_policies(policies_opt)
    t0 = time.perf_counter()
    if dataset == "obd":
        result = _obd()
    elif dataset == "hillstrom":
        result = _hillstrom(reward, seeds, names, ope_seeds, jobs, out_dir, tqdm, first_seed)
    else:
        if reward not in ("visit", "click"):
            raise click.BadParameter(
                "the simulator's reward is click + w * conversion; use --reward click", param_hint="--reward"
            )
        result = _simulator(seeds, names, jobs, out_dir, tqdm, first_seed)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = {"obd": "click", "simulator": "click"}.get(dataset, reward)
    (out_dir / f"{dataset}_{label}.json").write_text(json.dumps(result, indent=2))
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if dataset == "obd":
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"\n{dataset} reward={reward} seeds={seeds}  ({result['elapsed_s']} s)")
    extra = ("regret", "regret_2nd_half") if dataset == "simulator" else ()
    click.echo(_table(result["policies"], extra))
    if "drift_second_half" in result:
        click.echo("\ndrift scenario (Mens/Womens labels swapped half-way), second half:")
        click.echo(_table(result["drift_second_half"]))
    if "ope" in result:
        click.echo("\nfinal policies valued on the 30% hold-out (mean over OPE seeds):")
        for name, r in result["ope"].items():
            click.echo(f"  {name:<24}" + "  ".join(f"{k}={v:.4f}" for k, v in r.items()))
    click.echo(f"\nplots and JSON in {out_dir}/")


def _embeddings(texts: dict[str, str]) -> dict[str, np.ndarray]:
    from engine.embeddings import default_embedder

    keys = list(texts)
    vecs = default_embedder().encode([texts[k] for k in keys])
    return dict(zip(keys, vecs, strict=True))


def _hillstrom(reward, seeds, names, ope_seeds, jobs, out_dir, tqdm, first_seed: int = 0) -> dict:
    from engine.evaluation.datasets import load_hillstrom
    from engine.evaluation.plots import plot_curves, plot_shares
    from engine.evaluation.runner import best_fixed_arm_hillstrom, policy_table, run_hillstrom

    data = load_hillstrom(reward=reward)
    emb = _embeddings(data.arm_texts)
    with tqdm(total=seeds, desc="hillstrom seeds", unit="seed") as bar:
        runs = run_hillstrom(
            data,
            emb,
            seeds,
            names,
            ope_seeds=min(ope_seeds, seeds),
            jobs=jobs,
            progress=bar.update,
            first_seed=first_seed,
        )
    best = best_fixed_arm_hillstrom(data)
    best2 = best_fixed_arm_hillstrom(data, second_half_drift=True)
    n_matched = np.mean([r.matched for r in runs if r.scenario == "stationary"])
    tag = f"hillstrom_{reward}"
    plot_curves(
        runs,
        "stationary",
        out_dir / f"{tag}_cumulative.png",
        f"Hillstrom replay, reward={reward}: cumulative mean reward ({seeds} seeds)",
        "mean reward so far",
        n_matched,
    )
    plot_curves(
        runs,
        "drift",
        out_dir / f"{tag}_drift_cumulative.png",
        f"Hillstrom drift (Mens/Womens swapped half-way), reward={reward}",
        "mean reward so far",
        n_matched,
        vline=n_matched / 2,
    )
    plot_shares(
        runs, "stationary", data.arms, out_dir / f"{tag}_shares.png", "Hillstrom: arm shares over time"
    )
    plot_shares(runs, "drift", data.arms, out_dir / f"{tag}_drift_shares.png", "Hillstrom drift: arm shares")
    ope: dict[str, dict[str, float]] = {}
    for r in runs:
        if r.scenario == "ope":
            for k, v in r.ope.items():
                ope.setdefault(r.policy, {}).setdefault(k, []).append(v)  # type: ignore[attr-defined]
    ope_mean = {p: {k: float(np.mean(v)) for k, v in d.items()} for p, d in ope.items()}
    ordered = {p: ope_mean[p] for p in names if p in ope_mean}
    return {
        "dataset": "hillstrom",
        "reward": reward,
        "seeds": seeds,
        "first_seed": first_seed,
        "policies": policy_table(runs, "stationary", best),
        "best_fixed_arm": best,
        "drift_second_half": policy_table(runs, "drift", best2, field_name="second_half"),
        "drift_best_fixed_arm_second_half": best2,
        "ope": ordered,
        "ope_seeds": min(ope_seeds, seeds),
    }


def _simulator(seeds, names, jobs, out_dir, tqdm, first_seed: int = 0) -> dict:
    from engine.evaluation.plots import plot_curves, plot_shares
    from engine.evaluation.runner import best_fixed_arm_simulator, policy_table, run_simulator, summarise
    from engine.evaluation.simulator import SIM_TEXTS, SimulatorConfig

    cfg = SimulatorConfig()
    texts = {f"v{i}": SIM_TEXTS[i] for i in range(cfg.n_variants)}
    emb = _embeddings(texts)
    with tqdm(total=seeds, desc="simulator seeds", unit="seed") as bar:
        runs = run_simulator(emb, seeds, names, jobs=jobs, progress=bar.update, first_seed=first_seed)
    best, _ = best_fixed_arm_simulator(seeds, first_seed=first_seed)
    regret = summarise(runs, "simulator", "regret")
    regret2 = summarise(runs, "simulator", "regret_second_half")

    def extra(name: str) -> dict[str, float]:
        return {
            "regret": float(regret[name].mean()),
            "regret_std": float(regret[name].std(ddof=1)) if seeds > 1 else 0.0,
            "regret_2nd_half": float(regret2[name].mean()),
        }

    plot_curves(
        runs,
        "simulator",
        out_dir / "simulator_regret.png",
        f"Heterogeneous simulator: cumulative regret ({seeds} seeds)",
        "cumulative regret",
        cfg.horizon,
        vline=cfg.horizon * cfg.drift_at if cfg.drift_at is not None else None,
    )
    plot_shares(
        runs,
        "simulator",
        [f"v{i}" for i in range(cfg.n_variants)],
        out_dir / "simulator_shares.png",
        "Simulator: variant shares over time",
    )
    return {
        "dataset": "simulator",
        "reward": "click + w*conversion",
        "seeds": seeds,
        "first_seed": first_seed,
        "policies": policy_table(runs, "simulator", best, extra=extra),
        "best_fixed_arm": best,
        "simulator_config": cfg.model_dump(),
    }


def _obd() -> dict:
    """IPS/SNIPS/DR checked on OBD: value the uniform policy from the Bernoulli-TS log and compare with the
    uniform-random log's on-policy click rate; and value the logging policy itself (weights = 1)."""
    from engine.evaluation.datasets import load_obd
    from engine.evaluation.ope import ESTIMATORS, fit_reward_model

    rnd, bts = load_obd(behavior="random"), load_obd(behavior="bts")
    K = max(len(rnd.arms), len(bts.arms))
    truth = float(rnd.rewards.mean())
    se_truth = float(rnd.rewards.std(ddof=1) / np.sqrt(len(rnd)))
    q = fit_reward_model(rnd.X, rnd.actions, rnd.rewards, K)(bts.X)
    target = np.full((len(bts), K), 1.0 / K)
    est = {e.name: e.estimate(bts.actions, bts.rewards, bts.propensities, target, q) for e in ESTIMATORS}
    self_target = np.zeros((len(bts), K))
    self_target[np.arange(len(bts)), bts.actions] = bts.propensities
    on_policy = {
        e.name: e.estimate(bts.actions, bts.rewards, bts.propensities, self_target, q).value
        for e in ESTIMATORS[:2]
    }
    return {
        "dataset": "obd",
        "reward": "click",
        "rows": {"random": len(rnd), "bts": len(bts)},
        "uniform_policy_from_bts_log": {k: {"value": v.value, "stderr": v.stderr} for k, v in est.items()},
        "uniform_policy_on_policy_truth": {"value": truth, "stderr": se_truth},
        "bts_policy_on_its_own_log": {**on_policy, "mean_click": float(bts.rewards.mean())},
    }
