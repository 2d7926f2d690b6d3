"""Structured LLM-PO on text candidates: features from MiniLM embeddings reduced by PCA."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main

pytestmark = pytest.mark.slow


def test_eval_with_text_features_runs_the_structured_rule(tmp_path: Path) -> None:
    heads = ["Save 50% on running shoes today", "Running shoes", "Join 40,000 runners in our lightest shoe"]
    path = tmp_path / "judgments.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "winner"])
        for i in range(30):  # the first headline beats both others 2 times in 3; the others tie
            w.writerow([heads[0], heads[1], "a" if i % 3 else "b"])
            w.writerow([heads[0], heads[2], "a" if i % 3 else "b"])
            w.writerow([heads[1], heads[2], "tie"])
    result = CliRunner().invoke(
        main,
        [
            "llmpo",
            "eval",
            "--comparisons",
            str(path),
            "--runs",
            "10",
            "--text-features",
            "2",
            "--methods",
            "round_robin,llm_po,llm_po_structured",
            "--plot",
            str(tmp_path / "p.png"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["condorcet_winner"] == heads[0]
    assert set(summary["methods"]) == {"round_robin", "llm_po", "llm_po_structured"}
    assert summary["methods"]["llm_po_structured"]["mean_stop"] > 0
