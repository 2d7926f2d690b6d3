"""The interpretable space of marketing attributes and the ranker's impact coefficients.

An attribute (urgency, social proof, ...) is a direction in the ranker's feature space: the
mean MiniLM layer means φ of its representative phrases, centred on the reference
mean μ and scaled to unit norm so scores are comparable across attributes.
With V the (A × d) matrix of attribute directions:

* attribute scores of a text t:  s = V (φ(t) − μ)
* the ranker in embedding space: β' = Πᵀβ̂   (``LinearScorer.w_emb``)
* impact coefficients β'' solve the sign-constrained Lasso
  ``min ‖β' − Vᵀβ''‖² + λ‖β''‖₁  s.t.  β''_a · sign((Vβ')_a) ≥ 0``,
  with λ by K-fold CV over the d embedding coordinates. The constraint keeps an
  attribute's impact on the same side as its raw alignment with the ranker, so
  explanations never flip sign because of collinear attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from sklearn.linear_model import LassoCV
from sklearn.model_selection import KFold

#: The repository root (defaults work from any working directory).
_REPO = Path(__file__).resolve().parents[2]
DEFAULT_LEXICON = _REPO / "data" / "attributes.yaml"
MIN_PHRASES = 3


@dataclass(frozen=True)
class Attribute:
    """One marketing attribute of the lexicon."""

    name: str
    description: str
    phrases: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"attribute name {self.name!r} must be a non-empty snake_case identifier")
        if not self.description.strip():
            raise ValueError(f"attribute {self.name!r}: description is empty")
        if len(self.phrases) < MIN_PHRASES or not all(p.strip() for p in self.phrases):
            raise ValueError(f"attribute {self.name!r}: needs >= {MIN_PHRASES} non-empty phrases")


def load_lexicon(path: Path | str = DEFAULT_LEXICON) -> list[Attribute]:
    """Read the YAML (or JSON, a YAML subset) lexicon; names must be unique."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read attribute lexicon: {exc}") from exc
    entries = doc.get("attributes") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a top-level 'attributes:' list")
    attrs = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: attributes[{k}] is not a mapping")
        try:
            attrs.append(
                Attribute(
                    str(entry.get("name", "")),
                    str(entry.get("description", "")),
                    tuple(str(p) for p in entry.get("phrases") or ()),
                )
            )
        except ValueError as exc:
            raise ValueError(f"{path}: attributes[{k}]: {exc}") from exc
    names = [a.name for a in attrs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate attribute names {dupes}")
    return attrs


def attribute_matrix(
    attrs: Sequence[Attribute], embed: Callable[[Sequence[str]], np.ndarray], mu: np.ndarray
) -> np.ndarray:
    """V: one unit-norm, μ-centred direction per attribute (mean of its phrase embeddings)."""
    phrases = [p for a in attrs for p in a.phrases]
    E = np.asarray(embed(phrases), dtype=np.float64)
    bounds = np.cumsum([0] + [len(a.phrases) for a in attrs])
    V = np.stack([E[bounds[k] : bounds[k + 1]].mean(axis=0) - mu for k in range(len(attrs))])
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def attribute_scores(E: np.ndarray, V: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """s = V(φ(t) − μ) for each row of E: (n, A)."""
    return (np.asarray(E, dtype=np.float64) - mu) @ V.T


def impact_coefficients(
    beta_prime: np.ndarray, V: np.ndarray, *, n_folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, float]:
    """β'' of the sign-constrained Lasso and the CV-chosen λ (sklearn's ``alpha`` scale).

    Substituting β''_a = σ_a γ_a with σ = sign(Vβ') turns the constraint into
    γ ≥ 0, i.e. a non-negative Lasso on the design Vᵀ diag(σ).
    """
    sigma = np.sign(V @ beta_prime)
    sigma[sigma == 0] = 1.0
    X = V.T * sigma  # (d, A)
    model = LassoCV(
        positive=True,
        fit_intercept=False,
        cv=KFold(n_folds, shuffle=True, random_state=seed),
        max_iter=50_000,
    )
    model.fit(X, beta_prime)
    return sigma * model.coef_, float(model.alpha_)
