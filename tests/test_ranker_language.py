"""Template rendering and the grounded LLM writer's rubric / self-reflection."""

from __future__ import annotations

from collections import deque

from engine.ranker.language import (
    Fact,
    GroundedWriter,
    check_rubric,
    grounded_prompt,
    render_insights,
    render_opportunities,
)

INS = {
    "basis": "observed_ctr",
    "best": {"variant_id": "b", "text": "You Won't Believe What This Dog Did"},
    "worst": {"variant_id": "w", "text": "Dog Report Released"},
    "drivers": [
        {
            "attribute": "curiosity_gap",
            "description": "Withholds the key fact.",
            "direction": "more",
            "insight_index": 0.2,
            "impact": 0.5,
            "delta_expression": 0.4,
        }
    ],
}
OPP = {
    "opportunities": [
        {
            "attribute": "social_proof",
            "description": "What many others did.",
            "strongest_variant": {"variant_id": "b", "text": "Dog Report Released"},
            "current_expression_z": 0.2,
            "learning_potential": "high",
            "conversion_potential": "medium",
        }
    ]
}
FACT = Fact(
    "curiosity_gap",
    "Withholds the key fact.",
    "more",
    (INS["best"]["text"], INS["worst"]["text"]),
    "template sentence",
)


class ScriptedBackend:
    """Returns prepared answers in order and records prompts (a stand-in for the generator)."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = deque(answers)
        self.prompts: list[str] = []

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int | None) -> str:
        self.prompts.append(prompt)
        return self.answers.popleft()


def test_templates_state_the_facts() -> None:
    (s,) = render_insights(INS)
    assert '"You Won\'t Believe What This Dog Did" won over "Dog Report Released"' in s
    assert "more curiosity gap" in s
    (o,) = render_opportunities(OPP)
    assert "more social proof" in o and "learning potential high" in o


def test_prompt_is_grounded() -> None:
    p = grounded_prompt(FACT, "insight")
    assert '"Dog Report Released"' in p and "curiosity gap" in p and "more curiosity gap" in p


def test_rubric_rejects_ungrounded_text() -> None:
    assert check_rubric(FACT, 'More curiosity gap made "Dog Report Released" lose.').passed
    r = check_rubric(FACT, "Curiosity gap helped by 40% more clicks.")
    assert not r.passed
    assert any("quotes no treatment" in f for f in r.failures)
    assert any("numbers" in f for f in r.failures)


def test_writer_keeps_first_candidate_passing_rubric_and_reflection() -> None:
    good = 'The winner, "Dog Report Released" aside, used more curiosity gap.'
    backend = ScriptedBackend(["It was better.", good, "PASS: grounded"])
    out = GroundedWriter(backend).write(FACT, "insight")
    assert out["source"] == "llm" and out["text"] == good
    assert out["rejected"][0]["failures"]
    assert "Grade" in backend.prompts[-1]


def test_writer_falls_back_to_template_when_reflection_fails() -> None:
    good = 'More curiosity gap: "Dog Report Released".'
    backend = ScriptedBackend([good, "FAIL: misleading", good, "FAIL", good, "FAIL"])
    out = GroundedWriter(backend).write(FACT, "insight")
    assert out == {"text": "template sentence", "source": "template", "rejected": out["rejected"]}
    assert len(out["rejected"]) == 3
