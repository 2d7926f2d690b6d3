"""``abengine ranker``: train, cross-validate, evaluate and explain the headline ranker."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from engine.ranker.artifact import DEFAULT_ARTIFACT, RankerArtifact
from engine.ranker.attributes import DEFAULT_LEXICON
from engine.ranker.data import DEFAULT_DATA, DataError, ExperimentSet, load_experiments

_path = click.Path(path_type=Path)
_existing = click.Path(path_type=Path, exists=True, dir_okay=False)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Cap BLAS threads: the matrices are small and shared machines get oversubscribed."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield


def _load(path: Path) -> ExperimentSet:
    try:
        data = load_experiments(path)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="experiments file") from exc
    if not data.experiments:
        raise click.BadParameter(
            f"{path}: no experiment has two or more distinct headlines", param_hint="experiments file"
        )
    return data


def _embedder(progress: bool) -> Callable[[Any], np.ndarray]:
    """The ranker's features (MiniLM layer means), from the disk cache, new texts embedded in one batch."""
    from engine.ranker.embedding_cache import layer_means_cache

    return layer_means_cache(show_progress=progress).encode


def _stepper(bar: Any) -> Callable[[str], None]:
    def step(msg: str) -> None:
        bar.set_postfix_str(msg)
        bar.update(1)

    return step


def _echo_json(obj: Any, compact: bool) -> None:
    click.echo(json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=2))


def _load_artifact(path: Path) -> RankerArtifact:
    try:
        return RankerArtifact.load(path)
    except (FileNotFoundError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc


@click.group()
def ranker() -> None:
    """Content-aware ranking of headline variants learned from historical A/B tests.

    Scores are relative within an experiment (never absolute CTRs). Embeddings of
    headlines are cached under .abengine/cache/ so only new texts hit the model.
    """


@ranker.command()
@click.option("--data", type=_existing, default=DEFAULT_DATA, show_default=True, help="Training CSV(.gz).")
@click.option(
    "--lexicon",
    type=_existing,
    default=DEFAULT_LEXICON,
    show_default=True,
    help="Marketing-attribute lexicon (YAML).",
)
@click.option("--out", type=_path, default=DEFAULT_ARTIFACT, show_default=True, help="Artifact to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of folds and pair flips.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="BLAS threads.")
def train(data: Path, lexicon: Path, out: Path, seed: int, threads: int) -> None:
    """Build the ranker artifact from DATA deterministically (hyper-parameters by grouped CV)."""
    from tqdm import tqdm

    from engine.ranker.attributes import load_lexicon
    from engine.ranker.models import ArmTable
    from engine.ranker.train import train_artifact

    try:
        attrs = load_lexicon(lexicon)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lexicon") from exc
    exps = _load(data).experiments
    embed = _embedder(progress=True)
    with _threads(threads), tqdm(total=5, desc="ranker train") as bar:
        arms = ArmTable.build(exps, embed)
        bar.update(1)
        art = train_artifact(
            exps, arms, attrs, embed, seed=seed, data_path=data, lexicon_path=lexicon, step=_stepper(bar)
        )
    art.save(out)
    click.echo(
        json.dumps(
            {
                "artifact": str(out),
                "version": art.version,
                "hyper": art.scorer.hyper,
                "kappa": round(art.kappa, 4),
                "n_experiments": art.meta["n_experiments"],
                "n_positive_attributes": int((art.beta2 > 0).sum()),
                "n_negative_attributes": int((art.beta2 < 0).sum()),
            },
            indent=2,
        )
    )


@ranker.command()
@click.option("--data", type=_existing, default=DEFAULT_DATA, show_default=True, help="Training CSV(.gz).")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Outer grouped folds.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fold assignment.")
@click.option(
    "--plot",
    type=_path,
    default=Path("docs/results/ranker_cv.png"),
    show_default=True,
    help="PNG of the metrics of both rankers.",
)
@click.option("--report", type=_path, default=None, help="Also write the JSON report to this file.")
@click.option("--json", "compact", is_flag=True, help="Print compact one-line JSON.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="BLAS threads.")
def cv(
    data: Path, folds: int, seed: int, plot: Path, report: Path | None, compact: bool, threads: int
) -> None:
    """Grouped K-fold CV (by test id): paper ranker vs pairwise ranker, paired on the same folds.

    The paper ranker (Algorithm 1) uses MiniLM's sentence embedding; the pairwise ranker uses
    MiniLM's layer means (docs/RANKER.md). Hyper-parameters of both by inner grouped CV.
    """
    from tqdm import tqdm

    from engine.ranker.models import ArmTable
    from engine.ranker.plots import cv_chart
    from engine.ranker.train import run_cv

    exps = _load(data).experiments
    with _threads(threads), tqdm(total=2 * folds, desc="ranker cv") as bar:
        arms = ArmTable.build(exps, _embedder(progress=False))
        t0 = time.perf_counter()
        out = run_cv(exps, arms, n_splits=folds, seed=seed, step=_stepper(bar))
        out["seconds"] = round(time.perf_counter() - t0, 1)
    out["plot"] = str(cv_chart(out, plot))
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(out, indent=2))
    _echo_json(out, compact)


@ranker.command("eval")
@click.option(
    "--experiments",
    "path",
    type=_existing,
    required=True,
    help="CSV(.gz) with clickability_test_id, eyecatcher_id, headline, impressions, clicks.",
)
@click.option("--model", type=_path, default=DEFAULT_ARTIFACT, show_default=True, help="Ranker artifact.")
@click.option("--json", "compact", is_flag=True, help="Print compact one-line JSON.")
def eval_cmd(path: Path, model: Path, compact: bool) -> None:
    """Score the experiments of a file with the trained model and report ranking quality.

    Only the headlines are used for scoring; outcomes serve only as ground truth.
    Significant = chi-square test of clicks vs non-clicks across arms, p < 0.05.
    """
    from engine.ranker.metrics import score_experiment, summarize

    data = _load(path)
    art = _load_artifact(model)
    texts = data.headlines()
    E = dict(zip(texts, _embedder(progress=True)(texts), strict=True))
    from engine.ranker.style import style_matrix

    S = dict(zip(texts, style_matrix(texts), strict=True))
    results = []
    for e in data.experiments:
        s = art.scorer.score(np.stack([E[h] for h in e.headlines]), np.stack([S[h] for h in e.headlines]))
        results.append(score_experiment(e, s))
    out = summarize(results)
    seen = set(art.training_tests)
    out["n_skipped_single_headline"] = data.n_skipped_single_headline
    out["n_experiments_from_training_tests"] = sum(e.test_id in seen for e in data.experiments)
    out["model_version"] = art.version
    _echo_json(out, compact)


@ranker.command()
@click.option(
    "--experiments",
    "path",
    type=_existing,
    default=DEFAULT_DATA,
    show_default=True,
    help="CSV(.gz) holding the experiment.",
)
@click.option(
    "--experiment",
    "key",
    default=None,
    help="TEST_ID/EYECATCHER_ID; default: the most significant experiment in the file.",
)
@click.option("--model", type=_path, default=DEFAULT_ARTIFACT, show_default=True, help="Ranker artifact.")
@click.option("--predicted", is_flag=True, help="Pick best/worst by predicted score, not observed CTR.")
@click.option("--plot", type=_path, default=None, help="PNG of the signed attribute contributions.")
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True)
def insights(
    path: Path, key: str | None, model: Path, predicted: bool, plot: Path | None, top_k: int
) -> None:
    """Ranking, insights (why the best arm won) and opportunities for one experiment, as JSON."""
    from engine.ranker.language import render_insights, render_opportunities
    from engine.ranker.service import RankerService

    data = _load(path)
    if key is None:
        exp = min(data.experiments, key=lambda e: e.p_value)
    else:
        found = [e for e in data.experiments if e.key == key]
        if not found:
            raise click.BadParameter(
                f"no experiment {key!r} with >= 2 headlines in {path}", param_hint="--experiment"
            )
        exp = found[0]
    svc = RankerService(_load_artifact(model), _embedder(progress=False))
    variants = [(f"v{i}", h) for i, h in enumerate(exp.headlines)]
    observed = None if predicted else {f"v{i}": float(c) for i, c in enumerate(exp.ctr)}
    ins = svc.insights(variants, observed, top_k=top_k)
    opp = svc.opportunities(variants, top_k=top_k)
    out = {
        "experiment": exp.key,
        "p_value": exp.p_value,
        "variants": [
            {"variant_id": v, "text": t, "ctr": round(float(c), 5)}
            for (v, t), c in zip(variants, exp.ctr, strict=True)
        ],
        "ranking": svc.ranking(variants)["ranking"],
        "insights": ins,
        "opportunities": opp,
        "text": {"insights": render_insights(ins), "opportunities": render_opportunities(opp)},
    }
    if plot:
        from engine.ranker.plots import contributions_chart

        out["plot"] = str(contributions_chart(ins["contributions"], f"{exp.key}: best vs worst arm", plot))
    _echo_json(out, compact=False)


@ranker.command()
@click.option("--data", type=_existing, default=DEFAULT_DATA, show_default=True, help="Training CSV(.gz).")
@click.option(
    "--held-out",
    type=click.FloatRange(0.05, 0.5),
    default=0.2,
    show_default=True,
    help="Share of tests held out of training and replayed as bandits.",
)
@click.option(
    "--horizon",
    type=click.IntRange(1),
    default=5000,
    show_default=True,
    help="Impressions per replayed experiment.",
)
@click.option("--reps", type=click.IntRange(1), default=5, show_default=True, help="Replications each.")
@click.option(
    "--strength",
    type=click.FloatRange(0),
    default=200.0,
    show_default=True,
    help="Prior pseudo-impressions n0.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="BLAS threads.")
def simulate(
    data: Path, held_out: float, horizon: int, reps: int, strength: float, seed: int, threads: int
) -> None:
    """Measure the warm-start prior: Thompson with vs without it on held-out tests replayed as bandits."""
    from tqdm import tqdm

    from engine.ranker.cv import fold_indices
    from engine.ranker.models import ArmTable
    from engine.ranker.simulate import SimConfig
    from engine.ranker.simulate import simulate as run_sim
    from engine.ranker.train import PAIRWISE_GRID, calibrate_kappa, out_of_fold_scores, reference_mean

    exps = _load(data).experiments
    cfg = SimConfig(horizon=horizon, reps=reps, strength=strength, seed=seed)
    n_folds = max(2, round(1 / held_out))
    held = fold_indices(exps, n_folds, seed)[0]
    train_idx = np.setdiff1d(np.arange(len(exps)), held)
    train_exps = [exps[i] for i in train_idx]
    test_exps = [exps[i] for i in held]
    embed = _embedder(progress=False)
    fitter = PAIRWISE_GRID[0]  # the point the inner CV picks most often, fixed to keep the run short
    with _threads(threads):
        tr = ArmTable.build(train_exps, embed)
        scorer = fitter.fit(tr, reference_mean(tr.E))
        kappa = calibrate_kappa(out_of_fold_scores(fitter, train_exps, tr, n_splits=3, seed=seed), tr)
        te = ArmTable.build(test_exps, embed)
        s = scorer.score(te.E, te.S)
        scores = [s[te.group == k] for k in range(len(test_exps))]
        steps = 3 * -(-horizon // cfg.batch)
        with tqdm(total=steps, desc="simulate") as bar:
            out = run_sim(test_exps, scores, float(np.median(tr.ctr)), kappa, cfg, on_step=bar.update)
    _echo_json(out, compact=False)


@ranker.command()
@click.option("--model", type=_path, default=DEFAULT_ARTIFACT, show_default=True, help="Ranker artifact.")
@click.option("--variants", "n", type=click.IntRange(2), default=10, show_default=True)
@click.option("--repeat", type=click.IntRange(1), default=2000, show_default=True)
def bench(model: Path, n: int, repeat: int) -> None:
    """Time RankerService.rank on an N-variant experiment with cached embeddings (measures only)."""
    from engine.ranker.service import RankerService

    exps = _load(DEFAULT_DATA).experiments
    texts = [h for e in exps for h in e.headlines][:n]
    cached = dict(zip(texts, _embedder(progress=False)(texts), strict=True))
    svc = RankerService(_load_artifact(model), lambda ts: np.stack([cached[t] for t in ts]))
    variants = [(f"v{i}", t) for i, t in enumerate(texts)]
    svc.rank(variants)
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        svc.rank(variants)
        t.append(time.perf_counter() - t0)
    ms = np.array(t) * 1e3
    click.echo(
        json.dumps(
            {
                "variants": n,
                "repeat": repeat,
                "median_ms": round(float(np.median(ms)), 4),
                "p99_ms": round(float(np.percentile(ms, 99)), 4),
            },
            indent=2,
        )
    )
