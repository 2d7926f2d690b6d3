"""Loading and validating historical A/B test files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from engine.ranker.data import DataError, build_experiments, chi_square_p, load_experiments

HEADER = "clickability_test_id,eyecatcher_id,headline,impressions,clicks\n"


def _write(tmp_path: Path, body: str, name: str = "x.csv", header: str = HEADER) -> Path:
    p = tmp_path / name
    p.write_text(header + body)
    return p


def test_groups_merge_duplicate_headlines_and_skip_single_headline_groups(tmp_path: Path) -> None:
    p = _write(tmp_path, "t1,e1,A,100,5\nt1,e1,A,100,3\nt1,e1,B,50,1\nt1,e2,A,10,1\nt2,e1,C,10,2\n")
    data = load_experiments(p)
    assert len(data.experiments) == 1
    (exp,) = data.experiments
    assert exp.headlines == ("A", "B")
    assert exp.impressions.tolist() == [200, 50] and exp.clicks.tolist() == [8, 1]
    assert np.allclose(exp.ctr, [0.04, 0.02])
    assert data.n_skipped_single_headline == 2  # (t1, e2) and (t2, e1)


def test_reads_gzip(tmp_path: Path) -> None:
    p = tmp_path / "x.csv.gz"
    with gzip.open(p, "wt") as f:
        f.write(HEADER + "t,e,A,10,1\nt,e,B,10,2\n")
    assert len(load_experiments(p).experiments) == 1


def test_missing_columns_are_named(tmp_path: Path) -> None:
    p = _write(tmp_path, "t,e,A,10\n", header="clickability_test_id,eyecatcher_id,headline,impressions\n")
    with pytest.raises(DataError, match=r"missing required column.*clicks"):
        load_experiments(p)


def test_non_numeric_and_impossible_counts_name_the_lines(tmp_path: Path) -> None:
    p = _write(tmp_path, "t,e,A,10,1\nt,e,B,ten,1\nt,e,C,10,11\nt,e,D,5,-1\n")
    with pytest.raises(DataError) as err:
        load_experiments(p)
    msg = str(err.value)
    assert "line(s) 3, 5" in msg and "non-numeric" in msg
    assert "clicks > impressions on line(s) 4" in msg


def test_chi_square_significance() -> None:
    assert chi_square_p(np.array([10000, 10000]), np.array([100, 200])) < 1e-6
    assert chi_square_p(np.array([100, 100]), np.array([1, 1])) > 0.5
    assert chi_square_p(np.array([100, 100]), np.array([0, 0])) == 1.0


def test_build_experiments_from_rows() -> None:
    rows = [
        {"clickability_test_id": "t", "eyecatcher_id": "e", "headline": h, "impressions": "1000", "clicks": c}
        for h, c in (("A", "10"), ("B", "40"))
    ]
    data = build_experiments(rows)
    assert data.experiments[0].significant


@pytest.mark.slow
def test_dev_data_shape() -> None:
    data = load_experiments()
    assert len(data.experiments) == 2062
    assert abs(np.mean([1 / len(e) for e in data.experiments]) - 0.266) < 0.001
