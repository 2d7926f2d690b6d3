"""The LLM judge: prompt files, verdict parsing, order randomisation, logging and the simulate command.

The backend here is a scripted stand-in for a model (a persona-dependent preference), so the
tests check our logic, not an LLM's taste.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.llmpo import judge as judge_mod
from engine.llmpo.judge import GenerationNotAvailable, LLMJudge, load_prompt, parse_verdict
from engine.llmpo.llm_simulation import run_with_judge


class PreferenceBackend:
    """Clicks the headline containing `favourite` with probability p, else the other; sees the prompt only."""

    def __init__(self, favourite: str, p: float = 0.8, seed: int = 0) -> None:
        self.favourite, self.p = favourite, p
        self.rng = np.random.default_rng(seed)
        self.prompts: list[str] = []

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int | None) -> str:
        self.prompts.append(prompt)
        a = re.search(r"Headline A: (.*)", prompt).group(1)  # type: ignore[union-attr]
        fav_is_a = self.favourite in a
        pick_fav = self.rng.random() < self.p
        return "A" if fav_is_a == pick_fav else "B"


def test_prompt_file_is_versioned() -> None:
    text = load_prompt("v1")
    assert "{persona}" in text and "{a}" in text and "{b}" in text
    with pytest.raises(ValueError, match=r"unknown judge prompt version 'v99'.*judge_v1.txt"):
        load_prompt("v99")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("A", "a"),
        (" b.", "b"),
        ("TIE", "tie"),
        ('{"choice": "B"}', "b"),
        ("Answer: A", "a"),
        ("no idea", None),
    ],
)
def test_parse_verdict(raw: str, want: str | None) -> None:
    assert parse_verdict(raw) == want


def test_order_is_randomised_and_undone() -> None:
    backend = PreferenceBackend("GOOD", p=1.0)
    j = LLMJudge(backend, seed=3)
    verdicts = [j.judge("reader", "GOOD one", "bad one") for _ in range(40)]
    assert set(verdicts) == {"a"}  # always the favourite, whichever slot it was shown in
    firsts = {re.search(r"Headline A: (.*)", p).group(1) for p in backend.prompts}  # type: ignore[union-attr]
    assert firsts == {"GOOD one", "bad one"}


def test_run_with_judge_identifies_the_favourite_and_logs() -> None:
    cands = ["plain news", "GOOD headline", "dull title", "another one"]
    log: list[dict] = []
    out = run_with_judge(
        cands,
        ["p1", "p2"],
        LLMJudge(PreferenceBackend("GOOD"), seed=1),
        delta=0.05,
        budget=5000,
        seed=2,
        log=log.append,
    )
    assert out["identified"] and out["winner"] == "GOOD headline"
    assert out["z"] > out["beta"] and out["comparisons"] == len(log)
    assert {"a", "b", "winner", "persona", "z", "beta", "prompt_version", "raw", "swapped"} <= set(log[0])
    assert all(v["mu_hat"] > 0.5 for v in out["evidence_vs_leader"].values())


def test_run_with_judge_budget_exhausted_declares_nothing() -> None:
    out = run_with_judge(
        ["x", "y"],
        ["p"],
        LLMJudge(PreferenceBackend("zzz", p=0.5, seed=123), seed=7),
        delta=0.05,
        budget=30,
        seed=0,
    )
    assert not out["identified"] and out["winner"] is None and out["comparisons"] == 30
    with pytest.raises(ValueError, match="at least two candidates"):
        run_with_judge(["x"], ["p"], LLMJudge(PreferenceBackend("x")), delta=0.05, budget=3, seed=0)


def test_simulate_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cands = tmp_path / "c.txt"
    cands.write_text("GOOD first\nsecond\nthird\n", encoding="utf-8")
    log = tmp_path / "log.jsonl"
    monkeypatch.setattr(judge_mod, "generation_backend", lambda: PreferenceBackend("GOOD", p=0.9))
    res = CliRunner().invoke(
        main, ["llmpo", "simulate", "--candidates", str(cands), "--budget", "2000", "--log", str(log)]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert out["winner"] == "GOOD first" and out["prompt_version"] == "v1"
    assert len(log.read_text().splitlines()) == out["comparisons"]


def test_simulate_cli_says_when_generation_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cands = tmp_path / "c.txt"
    cands.write_text("a\nb\n", encoding="utf-8")

    def missing() -> None:
        raise GenerationNotAvailable("the LLM generation backend (engine.generation) is not importable")

    monkeypatch.setattr(judge_mod, "generation_backend", missing)
    res = CliRunner().invoke(
        main, ["llmpo", "simulate", "--candidates", str(cands), "--log", str(tmp_path / "l")]
    )
    assert res.exit_code == 1 and "engine.generation) is not importable" in res.output
    one = tmp_path / "one.txt"
    one.write_text("only\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["llmpo", "simulate", "--candidates", str(one)])
    assert res.exit_code == 2 and "need at least two" in res.output
