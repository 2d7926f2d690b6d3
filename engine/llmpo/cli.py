"""``abengine llmpo``: evaluate LLM-PO against baselines, or run it with an LLM judge."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


@click.group("llmpo")
def llmpo() -> None:
    """LLM-PO: find the best candidate with confidence 1−δ from pairwise comparisons.

    `eval` simulates every sampling rule on an instance (a comparisons file or a
    built-in) under one stopping rule; `simulate` runs LLM-PO with an LLM judge.
    """


def _progress_factory() -> tuple[Callable[[str, int], Callable[[int], None]], list]:
    from tqdm import tqdm

    bars: list = []

    def factory(name: str, runs: int) -> Callable[[int], None]:
        if bars:
            bars[-1].close()
        bar = tqdm(
            total=runs, desc=f"{name:>18}", unit="run", leave=True, file=click.get_text_stream("stderr")
        )
        bars.append(bar)
        return bar.update

    return factory, bars


@llmpo.command("eval")
@click.option(
    "--comparisons",
    "comparisons",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV (optionally gzipped) of judgments with columns a,b,winner (winner in a/b/tie).",
)
@click.option(
    "--instance",
    type=click.Choice(["synthetic-bt", "linear-bt", "tie", "upworthy-8"]),
    help="A built-in instance instead of a file (parameters in docs/LLM_PO.md); upworthy-8 is built "
    "from data/upworthy (per-impression click comparisons of the 8 headlines of one test).",
)
@click.option(
    "--upworthy-test",
    default=None,
    help="With --instance upworthy-8: use this clickability_test_id instead of the default choice "
    "(the 8-headline test with the most impressions).",
)
@click.option(
    "--delta",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Allowed probability of declaring a wrong winner.",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Simulated experiments per method.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulation.")
@click.option(
    "--threshold",
    "threshold_name",
    type=click.Choice(["provable", "heuristic"]),
    default="provable",
    show_default=True,
    help="Stopping threshold β(t, δ) used by every method.",
)
@click.option("--methods", default=None, help="Comma-separated subset of methods (default: all that apply).")
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Horizon per run (default 1000 × oracle time, at least 1e5); runs that reach it count "
    "as not stopped.",
)
@click.option(
    "--block-fraction",
    type=click.FloatRange(0, 0.1, max_open=True),
    default=0.002,
    show_default=True,
    help="Simulation speed-up: a chosen pair gets max(1, ρt) comparisons "
    "before the next decision; stopping times overshoot by at most ρ·t. 0 = step by step.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the PNG of stopping-time distributions (default llmpo_<instance>.png).",
)
@click.option(
    "--text-features",
    "text_dim",
    type=click.IntRange(1, 64),
    default=None,
    help="Give candidates features from their text (MiniLM embeddings reduced by PCA to this many "
    "dimensions; labels are the texts) so llm_po_structured runs on this instance too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON summary on stdout.")
def eval_cmd(
    comparisons: Path | None,
    instance: str | None,
    upworthy_test: str | None,
    delta: float,
    runs: int,
    seed: int,
    threshold_name: str,
    methods: str | None,
    max_steps: int | None,
    block_fraction: float,
    plot: Path | None,
    text_dim: int | None,
    as_json: bool,
) -> None:
    """Simulate RoundRobin, RandomPair, RUCB, dueling Thompson and LLM-PO on one instance.

    The instance's preference matrix μ comes from --comparisons (empirical μ̂ of the
    judgments; a Condorcet winner must exist) or --instance. Every method uses the
    same GLR stopping rule; the JSON reports mean/median stopping times, error rates
    and ratios to RoundRobin and to the oracle time t = T*·β(t, δ).
    """
    from engine.llmpo.comparisons import ComparisonsError, load_instance
    from engine.llmpo.evaluate import evaluate, plot_stopping_times
    from engine.llmpo.instances import BUILTIN

    if (comparisons is None) == (instance is None):
        raise click.UsageError("give exactly one of --comparisons FILE or --instance NAME")
    if comparisons is not None:
        try:
            inst = load_instance(comparisons)
        except ComparisonsError as exc:
            raise click.BadParameter(str(exc), param_hint="--comparisons") from None
    elif instance == "upworthy-8":
        from engine.llmpo.upworthy import upworthy_instance

        try:
            inst = upworthy_instance(test_id=upworthy_test)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--upworthy-test") from None
    else:
        inst = BUILTIN[instance]()  # type: ignore[index]
    if text_dim is not None:
        inst = with_text_features(inst, text_dim)
    factory, bars = _progress_factory()
    try:
        result = evaluate(
            inst,
            delta=delta,
            runs=runs,
            seed=seed,
            threshold_name=threshold_name,  # type: ignore[arg-type]
            methods=[m.strip() for m in methods.split(",")] if methods else None,
            max_steps=max_steps,
            block_fraction=block_fraction,
            progress=factory,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        for bar in bars:
            bar.close()
    plot_path = plot or Path(f"llmpo_{Path(inst.name).name.split('.')[0]}.png")
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot_stopping_times(result, str(plot_path))
    if as_json:
        click.echo(json.dumps(result.summary))
        return
    click.echo(json.dumps(result.summary, indent=2))
    click.echo(f"plot: {plot_path}", err=True)


def with_text_features(inst: Any, dim: int) -> Any:
    """The instance with features x_i = PCA(MiniLM(label_i)) for the structured (linear BT) rule."""
    import dataclasses

    from sklearn.decomposition import PCA

    from engine.embeddings import default_embedder

    embeddings = default_embedder().encode(list(inst.labels))
    d = min(dim, inst.k - 1)
    features = PCA(n_components=d, random_state=0).fit_transform(embeddings)
    return dataclasses.replace(inst, features=features, notes={**inst.notes, "text_feature_dim": d})


def _lines(path: Path, what: str) -> list[str]:
    items = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not items:
        raise click.BadParameter(f"{path} has no {what} (one per line expected)")
    return items


@llmpo.command("simulate")
@click.option(
    "--candidates",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Text file with one candidate (e.g. a headline) per line.",
)
@click.option(
    "--personas",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Text file with one persona description per line (default: the built-in personas_v1).",
)
@click.option(
    "--prompt-version", default="v1", show_default=True, help="Judge prompt file prompts/judge_<v>.txt."
)
@click.option(
    "--budget", type=click.IntRange(min=1), default=500, show_default=True, help="Most judge calls."
)
@click.option(
    "--delta",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Allowed probability of declaring a wrong winner.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of pair/persona draws and LLM calls."
)
@click.option(
    "--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True, help="Judge temperature."
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("llmpo_judgments.jsonl"),
    show_default=True,
    help="JSONL file receiving every comparison (appended).",
)
def simulate_cmd(
    candidates: Path,
    personas: Path | None,
    prompt_version: str,
    budget: int,
    delta: float,
    seed: int,
    temperature: float,
    log_path: Path,
) -> None:
    """Find the best candidate with an LLM judge simulating personas ("which would they click?").

    Uses the generation backend configured by ABENGINE_GEN_* (local SmolLM2 or a vLLM
    sidecar). Stops with confidence 1−δ or when the budget is spent, and prints the
    winner (null if not identified) with its evidence as JSON.
    """
    from tqdm import tqdm

    from engine.llmpo.judge import GenerationNotAvailable, LLMJudge, generation_backend
    from engine.llmpo.llm_simulation import run_with_judge

    cands = _lines(candidates, "candidates")
    if len(cands) < 2:
        raise click.BadParameter(f"{candidates} has {len(cands)} candidate; need at least two")
    if personas is not None:
        people = _lines(personas, "personas")
    else:
        from importlib.resources import files

        people = (
            (files("engine.llmpo") / "prompts" / "personas_v1.txt").read_text(encoding="utf-8").splitlines()
        )
    try:
        backend = generation_backend()
        judge = LLMJudge(backend, prompt_version=prompt_version, temperature=temperature, seed=seed)
    except GenerationNotAvailable as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prompt-version") from None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    err = click.get_text_stream("stderr")
    with log_path.open("a", encoding="utf-8") as log, tqdm(total=budget, desc="judge calls", file=err) as bar:
        try:
            result = run_with_judge(
                cands,
                [p for p in people if p.strip()],
                judge,
                delta=delta,
                budget=budget,
                seed=seed,
                log=lambda rec: log.write(json.dumps(rec) + "\n"),
                tick=bar.update,
            )
        except GenerationNotAvailable as exc:
            raise click.ClickException(f"{exc} (comparisons so far are in {log_path})") from None
    result["log"] = str(log_path)
    result["prompt_version"] = prompt_version
    click.echo(json.dumps(result, indent=2))
