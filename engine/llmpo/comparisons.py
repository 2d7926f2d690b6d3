"""Read a file of pairwise judgments (CSV, optionally gzipped) into an :class:`Instance`.

Format: a header ``a,b,winner`` and one judgment per row, ``winner`` ∈ {a, b, tie}
(a tie is half a win for each side). μ̂_ij = (wins of i over j + ½ ties) / comparisons.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np

from engine.llmpo.instances import Instance

COLUMNS = ("a", "b", "winner")
OUTCOMES = {"a": 1.0, "b": 0.0, "tie": 0.5}


class ComparisonsError(ValueError):
    """A comparisons file that cannot define an identification problem (the message says why)."""


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def read_counts(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(candidates in order of first appearance, N, S) with S_ij = wins of i over j (ties ½)."""
    labels: dict[str, int] = {}
    rows: list[tuple[int, int, float]] = []
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ComparisonsError(f"{path}: empty file (expected a header a,b,winner)")
        header = [h.strip() for h in header]
        unknown = [h for h in header if h not in COLUMNS]
        missing = [c for c in COLUMNS if c not in header]
        if unknown or missing:
            raise ComparisonsError(
                f"{path}: columns must be exactly a,b,winner; "
                f"unknown {unknown or 'none'}, missing {missing or 'none'}"
            )
        ia, ib, iw = (header.index(c) for c in COLUMNS)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ComparisonsError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            a, b, w = row[ia].strip(), row[ib].strip(), row[iw].strip().lower()
            if not a or not b:
                raise ComparisonsError(f"{path}:{line}: empty candidate name")
            if a == b:
                raise ComparisonsError(f"{path}:{line}: self-comparison of {a!r}")
            if w not in OUTCOMES:
                raise ComparisonsError(f"{path}:{line}: winner must be one of a, b, tie, got {row[iw]!r}")
            rows.append((labels.setdefault(a, len(labels)), labels.setdefault(b, len(labels)), OUTCOMES[w]))
    if len(labels) < 2:
        raise ComparisonsError(f"{path}: needs at least two candidates, found {len(labels)}")
    k = len(labels)
    n = np.zeros((k, k))
    s = np.zeros((k, k))
    for i, j, x in rows:
        n[i, j] += 1.0
        n[j, i] += 1.0
        s[i, j] += x
        s[j, i] += 1.0 - x
    return list(labels), n, s


def load_instance(path: Path) -> Instance:
    """The empirical instance of a comparisons file; it must have a Condorcet winner.

    Pairs never compared that do not involve the winner are set to μ = ½ (uninformative);
    their number is in ``notes["pairs_filled"]``. A missing pair *with* the winner is an error.
    """
    labels, n, s = read_counts(path)
    k = len(labels)
    mu = np.divide(s, n, out=np.full((k, k), 0.5), where=n > 0)
    off = ~np.eye(k, dtype=bool)
    for c in range(k):
        opponents = off[c]
        seen = n[c] > 0
        if np.all(mu[c][opponents & seen] > 0.5) and not np.all(seen[opponents]):
            missing = [labels[j] for j in np.flatnonzero(opponents & ~seen)]
            raise ComparisonsError(
                f"{path}: {labels[c]!r} beats every opponent it met but was never compared with {missing}"
            )
    inst = Instance(
        name=path.name,
        mu=mu,
        labels=tuple(labels),
        description=f"empirical preferences from {path.name}: {int(n[off].sum() / 2)} judgments, K={k}",
        notes={"pairs_filled": int(((n == 0) & off).sum() // 2), "judgments": int(n[off].sum() / 2)},
    )
    if inst.condorcet_winner() is None:
        copeland = ((mu > 0.5) & off).sum(axis=1)
        best = labels[int(copeland.argmax())]
        raise ComparisonsError(
            f"{path}: no Condorcet winner (no candidate beats every other with μ̂ > ½; "
            f"best Copeland score {int(copeland.max())}/{k - 1} by {best!r})"
        )
    return inst
