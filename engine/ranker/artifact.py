"""The versioned ranker artifact: one ``.npz`` with arrays and a JSON header.

It holds everything scoring and insights need (μ, the linear scorer, the
attribute directions V, impact coefficients β'', historical attribute
statistics, the score→log-CTR calibration used for warm starts) and the
provenance of the run (data and lexicon SHA-256, seed, hyper-parameters), so a
served prediction can be traced to the data that produced it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.ranker.models import LinearScorer

#: 2: scores and attribute directions live in MiniLM layer means (2,688-d); 1 was the 384-d sentence embedding
FORMAT_VERSION = 2
#: The repository root (defaults work from any working directory).
_REPO = Path(__file__).resolve().parents[2]
DEFAULT_ARTIFACT = _REPO / "data" / "ranker" / "ranker.npz"


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class RankerArtifact:
    """A trained ranker with its attribute space (see module docstring)."""

    scorer: LinearScorer
    attribute_names: list[str]
    attribute_descriptions: list[str]
    V: np.ndarray  # (A, d)
    beta2: np.ndarray  # (A,) impact coefficients β''
    attr_mean: np.ndarray  # (A,) mean attribute score over training arms
    attr_sd: np.ndarray  # (A,) its standard deviation
    hist_expressed: np.ndarray  # (A,) share of training experiments expressing the attribute (z > 1)
    kappa: float  # within-experiment log-CTR change per SD of score (out-of-fold)
    base_ctr: float  # median arm CTR of the training data
    training_tests: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        A, d = self.V.shape
        if len(self.attribute_names) != A or self.beta2.shape != (A,) or self.scorer.w_emb.shape != (d,):
            raise ValueError("artifact arrays disagree on the number of attributes or embedding size")

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unversioned"))

    def save(self, path: Path | str = DEFAULT_ARTIFACT) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        s = self.scorer
        header = {
            "format": FORMAT_VERSION,
            "scorer_name": s.name,
            "hyper": s.hyper,
            "attribute_names": self.attribute_names,
            "attribute_descriptions": self.attribute_descriptions,
            "kappa": self.kappa,
            "base_ctr": self.base_ctr,
            "meta": self.meta,
        }
        f32 = np.float32
        with open(path, "wb") as fh:
            np.savez_compressed(
                fh,
                header=np.array(json.dumps(header, sort_keys=True)),
                mu=s.mu.astype(f32),
                w_emb=s.w_emb,
                style_mean=s.style_mean,
                style_scale=s.style_scale,
                w_style=s.w_style,
                V=self.V.astype(f32),
                beta2=self.beta2,
                attr_mean=self.attr_mean,
                attr_sd=self.attr_sd,
                hist_expressed=self.hist_expressed,
                training_tests=np.array(sorted(self.training_tests)),
            )
        return path

    @classmethod
    def load(cls, path: Path | str = DEFAULT_ARTIFACT) -> RankerArtifact:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no ranker artifact; build it with `abengine ranker train`")
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            if header.get("format") != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: artifact format {header.get('format')} != {FORMAT_VERSION}; "
                    "rebuild it with `abengine ranker train`"
                )
            scorer = LinearScorer(
                header["scorer_name"],
                z["mu"].astype(np.float64),
                z["w_emb"],
                z["style_mean"],
                z["style_scale"],
                z["w_style"],
                header["hyper"],
            )
            return cls(
                scorer=scorer,
                attribute_names=header["attribute_names"],
                attribute_descriptions=header["attribute_descriptions"],
                V=z["V"].astype(np.float64),
                beta2=z["beta2"],
                attr_mean=z["attr_mean"],
                attr_sd=z["attr_sd"],
                hist_expressed=z["hist_expressed"],
                kappa=float(header["kappa"]),
                base_ctr=float(header["base_ctr"]),
                training_tests=[str(t) for t in z["training_tests"]],
                meta=header["meta"],
            )
