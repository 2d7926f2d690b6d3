"""Reading judgment files and the ``abengine llmpo eval`` command."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.llmpo.comparisons import ComparisonsError, load_instance, read_counts


def _write(path: Path, text: str, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _good_rows() -> str:
    rows = ["a,b,winner"]
    rows += ["x,y,a"] * 7 + ["x,y,b"] * 3 + ["x,z,a"] * 8 + ["z,x,tie"] * 2 + ["y,z,b"] * 6 + ["y,z,tie"] * 4
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("gz", [False, True])
def test_reads_counts_and_winner(tmp_path: Path, gz: bool) -> None:
    path = _write(tmp_path / ("c.csv.gz" if gz else "c.csv"), _good_rows(), gz)
    labels, n, s = read_counts(path)
    assert labels == ["x", "y", "z"]
    assert n[0, 1] == 10 and s[0, 1] == 7
    assert n[0, 2] == 10 and s[0, 2] == 9  # 8 wins + 2 ties as halves
    assert s[1, 2] == 2 and s[2, 1] == 8
    inst = load_instance(path)
    assert inst.labels[inst.condorcet_winner()] == "x"
    assert inst.mu[0, 2] == pytest.approx(0.9)
    np.testing.assert_allclose(inst.mu + inst.mu.T, 1.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b,winner,extra\nx,y,a,1\n", r"unknown \['extra'\]"),
        ("a,winner\nx,a\n", r"missing \['b'\]"),
        ("a,b,winner\nx,y,a\nx,y,c\n", r":3: winner must be one of a, b, tie, got 'c'"),
        ("a,b,winner\nx,x,a\n", r":2: self-comparison of 'x'"),
        ("a,b,winner\n", "at least two candidates, found 0"),
        ("", "empty file"),
        ("a,b,winner\nx,y\n", r":2: expected 3 fields"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ComparisonsError, match=match):
        load_instance(_write(tmp_path / "bad.csv", text))


def test_no_condorcet_winner_and_missing_pair(tmp_path: Path) -> None:
    cycle = "a,b,winner\n" + "x,y,a\ny,z,a\nz,x,a\n"
    with pytest.raises(ComparisonsError, match="no Condorcet winner"):
        load_instance(_write(tmp_path / "cycle.csv", cycle))
    missing = "a,b,winner\nx,y,a\ny,z,a\n"
    with pytest.raises(
        ComparisonsError, match=r"'x' beats every opponent it met but was never compared with \['z'\]"
    ):
        load_instance(_write(tmp_path / "missing.csv", missing))


def test_eval_cli_json(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.csv", _good_rows())
    plot = tmp_path / "plot.png"
    result = CliRunner().invoke(
        main,
        [
            "llmpo",
            "eval",
            "--comparisons",
            str(path),
            "--runs",
            "6",
            "--seed",
            "1",
            "--json",
            "--max-steps",
            "20000",
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["condorcet_winner"] == "x" and out["runs"] == 6 and out["delta"] == 0.05
    assert set(out["methods"]) == {
        "round_robin",
        "random_pair",
        "rucb",
        "dueling_thompson",
        "llm_po",
        "llm_po_tracking",
        "llm_po_sampling",
    }
    for m in out["methods"].values():
        assert {"mean_stop", "median_stop", "error_rate", "ratio_to_round_robin"} <= set(m)
    assert out["methods"]["round_robin"]["ratio_to_round_robin"] == 1.0
    assert out["oracle_time"] > out["characteristic_time"] > 0
    assert plot.stat().st_size > 1000


def test_eval_cli_bad_input_is_a_usage_error(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", "a,b,winner\nx,y,maybe\n")
    result = CliRunner().invoke(main, ["llmpo", "eval", "--comparisons", str(bad), "--json"])
    assert result.exit_code == 2
    assert "winner must be one of a, b, tie" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["llmpo", "eval", "--json"])
    assert result.exit_code == 2 and "exactly one of --comparisons FILE or --instance NAME" in result.output
    result = CliRunner().invoke(
        main, ["llmpo", "eval", "--instance", "tie", "--methods", "nope", "--runs", "1"]
    )
    assert result.exit_code == 2 and "unknown or inapplicable methods ['nope']" in result.output


def test_help_explains_commands() -> None:
    result = CliRunner().invoke(main, ["llmpo", "--help"])
    assert result.exit_code == 0 and "eval" in result.output
    result = CliRunner().invoke(main, ["llmpo", "eval", "--help"])
    assert "--comparisons" in result.output and "--delta" in result.output
