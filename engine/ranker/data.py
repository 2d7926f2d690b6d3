"""Historical headline A/B tests: load, validate, group into experiments.

An *experiment* is a group (``clickability_test_id``, ``eyecatcher_id``) with at
least two distinct headlines; arms with the same headline are merged by summing
impressions and clicks (they differ only in parts we do not model). Outcomes are
CTR = clicks / impressions. Loading is pure apart from reading the file, and bad
rows are reported by their line number so users can fix the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import chi2_contingency

REQUIRED_COLUMNS = ("clickability_test_id", "eyecatcher_id", "headline", "impressions", "clicks")
#: The repository root (defaults work from any working directory).
_REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = _REPO / "data" / "upworthy" / "upworthy_dev.csv.gz"
SIGNIFICANCE_LEVEL = 0.05


class DataError(ValueError):
    """The experiments file is malformed; the message names the rows or columns."""


@dataclass(frozen=True)
class Experiment:
    """One headline test: distinct headlines with their merged impressions and clicks."""

    test_id: str
    eyecatcher_id: str
    headlines: tuple[str, ...]
    impressions: np.ndarray
    clicks: np.ndarray
    p_value: float = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.headlines)
        if n < 2 or len(set(self.headlines)) != n:
            raise ValueError(f"experiment {self.key}: needs >= 2 distinct headlines, got {n}")
        if self.impressions.shape != (n,) or self.clicks.shape != (n,):
            raise ValueError(f"experiment {self.key}: impressions/clicks must have one entry per headline")
        if np.any(self.impressions <= 0) or np.any(self.clicks < 0) or np.any(self.clicks > self.impressions):
            raise ValueError(f"experiment {self.key}: need 0 <= clicks <= impressions and impressions > 0")
        object.__setattr__(self, "p_value", chi_square_p(self.impressions, self.clicks))

    @property
    def key(self) -> str:
        return f"{self.test_id}/{self.eyecatcher_id}"

    @property
    def ctr(self) -> np.ndarray:
        return self.clicks / self.impressions

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE_LEVEL

    def __len__(self) -> int:
        return len(self.headlines)


def chi_square_p(impressions: np.ndarray, clicks: np.ndarray) -> float:
    """p-value of the chi-square test of clicks vs non-clicks across arms (1.0 when degenerate)."""
    table = np.stack([clicks, impressions - clicks], axis=1).astype(float)
    if np.any(table.sum(axis=0) == 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(chi2_contingency(table, correction=False).pvalue)


@dataclass(frozen=True)
class ExperimentSet:
    """Experiments built from a file, plus how many groups were skipped (single headline)."""

    experiments: list[Experiment]
    n_skipped_single_headline: int
    n_rows: int

    def headlines(self) -> list[str]:
        """All distinct headlines, in first-seen order."""
        return list(dict.fromkeys(h for e in self.experiments for h in e.headlines))


def _open_text(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _parse_count(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return None
    if not np.isfinite(number) or number != int(number) or number < 0:
        return None
    return int(number)


def _fmt_rows(lines: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def build_experiments(rows: Iterable[Mapping[str, str | None]], *, first_line: int = 2) -> ExperimentSet:
    """Validate rows (dicts with the required columns) and group them into experiments.

    ``first_line`` is the file line number of the first row, for error messages.
    """
    bad_numbers: list[int] = []
    bad_clicks: list[int] = []
    empty_headline: list[int] = []
    groups: dict[tuple[str, str], dict[str, list[int]]] = {}
    n_rows = 0
    for line, row in enumerate(rows, start=first_line):
        n_rows += 1
        imps, clicks = _parse_count(row.get("impressions")), _parse_count(row.get("clicks"))
        if imps is None or clicks is None:
            bad_numbers.append(line)
            continue
        if clicks > imps:
            bad_clicks.append(line)
            continue
        headline = (row.get("headline") or "").strip()
        if not headline:
            empty_headline.append(line)
            continue
        key = ((row.get("clickability_test_id") or "").strip(), (row.get("eyecatcher_id") or "").strip())
        arm = groups.setdefault(key, {}).setdefault(headline, [0, 0])
        arm[0] += imps
        arm[1] += clicks
    problems = []
    if bad_numbers:
        problems.append(f"non-numeric or negative impressions/clicks on line(s) {_fmt_rows(bad_numbers)}")
    if bad_clicks:
        problems.append(f"clicks > impressions on line(s) {_fmt_rows(bad_clicks)}")
    if empty_headline:
        problems.append(f"empty headline on line(s) {_fmt_rows(empty_headline)}")
    if problems:
        raise DataError("; ".join(problems))
    experiments: list[Experiment] = []
    skipped = 0
    for (test_id, eye_id), arms in groups.items():
        live = {h: v for h, v in arms.items() if v[0] > 0}
        if len(live) < 2:
            skipped += 1
            continue
        experiments.append(
            Experiment(
                test_id=test_id,
                eyecatcher_id=eye_id,
                headlines=tuple(live),
                impressions=np.array([v[0] for v in live.values()], dtype=np.int64),
                clicks=np.array([v[1] for v in live.values()], dtype=np.int64),
            )
        )
    return ExperimentSet(experiments, skipped, n_rows)


def load_experiments(path: Path | str = DEFAULT_DATA) -> ExperimentSet:
    """Read a CSV (optionally gzipped) with at least :data:`REQUIRED_COLUMNS` into experiments."""
    path = Path(path)
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing required column(s) {', '.join(missing)} (header: {header})")
        try:
            return build_experiments(reader)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: unreadable CSV near line {reader.line_num}: {exc}") from exc
