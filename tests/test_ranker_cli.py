"""``abengine ranker`` commands: clear errors on bad input; eval end to end on real headlines."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.ranker.artifact import DEFAULT_ARTIFACT
from engine.ranker.cli import ranker
from engine.ranker.data import DEFAULT_DATA

HEADER = "clickability_test_id,eyecatcher_id,headline,impressions,clicks\n"


def _run(*args: str):
    return CliRunner().invoke(ranker, list(args))


def test_help_explains_every_command() -> None:
    for cmd in ("train", "cv", "eval", "insights", "simulate", "bench"):
        res = _run(cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.output


def test_eval_rejects_missing_columns(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("clickability_test_id,headline,impressions\nt,A,10\n")
    res = _run("eval", "--experiments", str(p), "--model", str(DEFAULT_ARTIFACT))
    assert res.exit_code == 2 and "eyecatcher_id" in res.output and "clicks" in res.output
    assert "Traceback" not in res.output


def test_eval_names_bad_rows(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(HEADER + "t,e,A,10,1\nt,e,B,x,1\nt,e,C,10,20\n")
    res = _run("eval", "--experiments", str(p), "--model", str(DEFAULT_ARTIFACT))
    assert res.exit_code == 2
    assert "line(s) 3" in res.output and "clicks > impressions on line(s) 4" in res.output


def test_eval_missing_model_is_a_usage_error(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text(HEADER + "t,e,A,10,1\nt,e,B,10,2\n")
    res = _run("eval", "--experiments", str(p), "--model", str(tmp_path / "none.npz"))
    assert res.exit_code == 2 and "ranker train" in res.output


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_ARTIFACT.exists(), reason="no trained artifact")
def test_eval_end_to_end_on_a_slice_of_real_tests(tmp_path: Path) -> None:
    """Scores 40 real experiments with the committed artifact (loads MiniLM unless cached)."""
    with gzip.open(DEFAULT_DATA, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    tests = sorted({r["clickability_test_id"] for r in rows})[:40]
    keep = [r for r in rows if r["clickability_test_id"] in set(tests)]
    p = tmp_path / "slice.csv.gz"
    with gzip.open(p, "wt", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    res = _run("eval", "--experiments", str(p), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for key in (
        "n_experiments",
        "n_significant",
        "spearman_mean",
        "spearman_significant_mean",
        "top1",
        "top1_significant",
        "top1_random",
        "pairwise_accuracy",
        "spearman_mean_se",
    ):
        assert key in out
    assert out["n_experiments"] > 0 and out["n_skipped_single_headline"] > 0
    assert out["n_experiments_from_training_tests"] == out["n_experiments"]  # slice of the training data
    assert -1 <= out["spearman_mean"] <= 1 and 0 <= out["top1"] <= 1


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_ARTIFACT.exists(), reason="no trained artifact")
def test_insights_command_writes_json_and_plot(tmp_path: Path) -> None:
    rows = [
        "t,e,You Won't Believe What This Teacher Did For Her Class,20000,600",
        "t,e,Teacher Gives Class A Gift,20000,300",
        "t,e,Here's Why One Teacher's Gift Made 30 Kids Cry,20000,450",
    ]
    p = tmp_path / "one.csv"
    p.write_text(HEADER + "\n".join(rows) + "\n")
    png = tmp_path / "c.png"
    res = _run("insights", "--experiments", str(p), "--plot", str(png))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["insights"]["best"]["text"].startswith("You Won't")
    assert len(out["ranking"]) == 3 and out["text"]["insights"]
    assert png.stat().st_size > 1000
    bad = _run("insights", "--experiments", str(p), "--experiment", "nope/none")
    assert bad.exit_code == 2 and "nope/none" in bad.output
