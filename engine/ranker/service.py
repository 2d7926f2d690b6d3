"""RankerService: what the HTTP API calls for ranking, insights, opportunities and priors.

Load it once at engine start (:meth:`RankerService.load`); every method takes
``variants`` as ``[(variant_id, text), ...]`` and returns plain JSON-able
values. Text features come from the injected ``encode`` (default: the MiniLM layer
means of the process-wide embedder, whose LRU cache makes repeat calls cheap and
batches new texts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.ranker.artifact import DEFAULT_ARTIFACT, RankerArtifact
from engine.ranker.insights import insights as _insights
from engine.ranker.insights import opportunities as _opportunities
from engine.ranker.prioritize import mmr
from engine.ranker.style import style_matrix
from engine.ranker.warm_start import actor_logits, beta_pseudo_counts, prior_ctr, standardize

Variants = Sequence[tuple[str, str]]
Encode = Callable[[Sequence[str]], np.ndarray]


def _default_encode(texts: Sequence[str]) -> np.ndarray:
    from engine.embeddings import default_embedder

    return default_embedder().encode_layers(texts)


class RankerService:
    """Relative scores and explanations for the variants of one experiment."""

    def __init__(self, artifact: RankerArtifact, encode: Encode | None = None) -> None:
        self.artifact = artifact
        self._encode = encode or _default_encode
        self._style: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: Path | str = DEFAULT_ARTIFACT, encode: Encode | None = None) -> RankerService:
        return cls(RankerArtifact.load(path), encode)

    @property
    def model_version(self) -> str:
        return self.artifact.version

    def _check(self, variants: Variants) -> tuple[list[str], list[str]]:
        if not variants:
            raise ValueError("no variants given")
        ids = [str(v[0]) for v in variants]
        texts = [str(v[1]) for v in variants]
        if len(set(ids)) != len(ids):
            raise ValueError("variant ids must be unique")
        empty = [i for i, t in zip(ids, texts, strict=True) if not t.strip()]
        if empty:
            raise ValueError(f"variant(s) {empty} have empty text")
        return ids, texts

    def _style_rows(self, texts: list[str]) -> np.ndarray:
        rows = []
        for t in texts:
            row = self._style.get(t)
            if row is None:
                row = self._style[t] = style_matrix([t])[0]
                if len(self._style) > 100_000:
                    self._style.clear()
            rows.append(row)
        return np.stack(rows)

    def scores(self, texts: list[str], E: np.ndarray | None = None) -> np.ndarray:
        """Relative scores of ``texts`` (embeddings computed in one batch unless given)."""
        E = self._encode(texts) if E is None else E
        return self.artifact.scorer.score(E, self._style_rows(texts))

    def rank(self, variants: Variants) -> list[tuple[str, float]]:
        """``[(variant_id, score)]`` best first; scores compare only within this call."""
        ids, texts = self._check(variants)
        s = self.scores(texts)
        order = np.argsort(-s, kind="stable")
        return [(ids[i], float(s[i])) for i in order]

    def ranking(self, variants: Variants) -> dict[str, Any]:
        """JSON body of ``GET /v1/experiments/{id}/ranking``."""
        ranked = self.rank(variants)
        z = standardize(np.array([s for _, s in ranked]))
        return {
            "model_version": self.model_version,
            "relative": True,
            "ranking": [
                {"variant_id": v, "rank": r + 1, "score": round(s, 6), "z": round(float(zz), 4)}
                for r, ((v, s), zz) in enumerate(zip(ranked, z, strict=True))
            ],
        }

    def insights(
        self, variants: Variants, observed: Mapping[str, float] | None = None, top_k: int = 5
    ) -> dict[str, Any]:
        """JSON body of ``/insights``: drivers of best vs worst (by observed CTR when given)."""
        ids, texts = self._check(variants)
        E = self._encode(texts)
        obs = None
        if observed is not None:
            missing = [i for i in ids if i not in observed]
            if missing:
                raise ValueError(f"observed CTR missing for variant(s) {missing}")
            obs = [float(observed[i]) for i in ids]
        return _insights(self.artifact, ids, texts, E, self.scores(texts, E), obs, top_k=top_k)

    def opportunities(self, variants: Variants, top_k: int = 5) -> dict[str, Any]:
        """JSON body of ``/opportunities``: important attributes the variants under-express."""
        ids, texts = self._check(variants)
        return _opportunities(self.artifact, ids, texts, self._encode(texts), top_k=top_k)

    def prioritize(self, candidates: Variants, k: int, diversity: float = 0.3) -> list[dict[str, Any]]:
        """The K candidates to test first (MMR on predicted score and embedding diversity)."""
        ids, texts = self._check(candidates)
        E = self._encode(texts)
        s = self.scores(texts, E)
        picks = mmr(s, E, k, diversity)
        return [{"variant_id": ids[i], "score": float(s[i]), "pick": n + 1} for n, i in enumerate(picks)]

    def warm_start_prior(
        self, variants: Variants, *, strength: float = 200.0, base_ctr: float | None = None
    ) -> dict[str, Any]:
        """Thompson Beta pseudo-counts and actor initial logits from the predicted scores."""
        ids, texts = self._check(variants)
        s = self.scores(texts)
        art = self.artifact
        base = art.base_ctr if base_ctr is None else base_ctr
        alpha, beta = beta_pseudo_counts(s, base, art.kappa, strength)
        p = prior_ctr(s, base, art.kappa)
        logits = actor_logits(s, art.kappa)
        return {
            "model_version": self.model_version,
            "base_ctr": base,
            "kappa": art.kappa,
            "strength": strength,
            "variants": {
                i: {
                    "score": float(s[n]),
                    "prior_ctr": float(p[n]),
                    "alpha": float(alpha[n]),
                    "beta": float(beta[n]),
                    "logit": float(logits[n]),
                }
                for n, i in enumerate(ids)
            },
        }
