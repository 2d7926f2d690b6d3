"""A real 8-candidate instance from the Upworthy headline tests (per-impression click comparisons).

The archive has no pairwise judgments, only per-arm impressions and clicks from randomised
traffic. A *comparison* of headlines a and b is what the live allocator forms: one
impression of each, higher reward (click = 1) wins, equal rewards tie. For independent
impressions with click rates p_a, p_b:

    μ_ab = p_a(1 − p_b) + ½[p_a p_b + (1 − p_a)(1 − p_b)] = ½ + (p_a − p_b)/2,

so the Condorcet winner is the headline with the highest CTR and every gap is half a
CTR difference. The empirical CTRs of the test are taken as the truth of the simulation.
"""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from pathlib import Path

import numpy as np

from engine.llmpo.instances import Instance

#: The project's copy of the archive sample (see data/upworthy and /work/shared/data/README.md).
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "data" / "upworthy" / "upworthy_dev.csv.gz"


def headline_arms(path: Path) -> dict[tuple[str, str], dict[str, list[int]]]:
    """(test id, eyecatcher id) -> headline -> [impressions, clicks], summed over packages."""
    groups: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            arm = groups[(row["clickability_test_id"], row["eyecatcher_id"])][row["headline"]]
            arm[0] += int(float(row["impressions"]))
            arm[1] += int(float(row["clicks"]))
    return groups


def upworthy_instance(path: Path = DEFAULT_PATH, k: int = 8, test_id: str | None = None) -> Instance:
    """The test with exactly ``k`` distinct headlines (same image) and the most impressions,
    or the group of ``test_id``; μ_ab = ½ + (CTR_a − CTR_b)/2."""
    if not path.exists():
        raise ValueError(f"Upworthy file not found: {path}")
    groups = headline_arms(path)
    if test_id is not None:
        chosen = [key for key in groups if key[0] == test_id and len(groups[key]) >= 2]
        if not chosen:
            raise ValueError(f"no Upworthy test {test_id!r} with at least two headlines")
        key = max(chosen, key=lambda g: len(groups[g]))
    else:
        sized = [g for g in groups if len(groups[g]) == k]
        if not sized:
            raise ValueError(f"no Upworthy test with exactly {k} headlines")
        key = max(sized, key=lambda g: sum(a[0] for a in groups[g].values()))
    arms = sorted(groups[key].items(), key=lambda kv: -kv[1][1] / max(kv[1][0], 1))
    imps = np.array([a[1][0] for a in arms], dtype=float)
    clicks = np.array([a[1][1] for a in arms], dtype=float)
    ctr = clicks / np.maximum(imps, 1.0)
    mu = 0.5 + (ctr[:, None] - ctr[None, :]) / 2.0
    return Instance(
        name=f"upworthy-{key[0][:10]}",
        mu=mu,
        labels=tuple(f"h{i + 1}" for i in range(len(arms))),
        description=(
            f"Upworthy test {key[0]} (image {key[1]}), {len(arms)} headlines, {int(imps.sum())} impressions; "
            "per-impression click comparisons, mu_ab = 1/2 + (CTR_a - CTR_b)/2"
        ),
        notes={
            "test_id": key[0],
            "headlines": [a[0] for a in arms],
            "impressions": imps.astype(int).tolist(),
            "clicks": clicks.astype(int).tolist(),
            "ctr": ctr.round(5).tolist(),
            "gaps_to_winner": (mu[0, 1:] - 0.5).round(5).tolist(),
        },
    )
