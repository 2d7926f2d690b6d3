"""Loaders of the logged bandit datasets under ``data/`` into one shape, :class:`LoggedBandit`.

Loaders never modify the data; derived columns (e.g. ``log_history``) are computed on load and documented.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.perception.encoders import PortraitEncoder
from engine.perception.schema import FeatureSchema

REPO_ROOT = Path(__file__).resolve().parents[2]
HILLSTROM_PATH = REPO_ROOT / "data" / "hillstrom" / "hillstrom_email.csv.gz"
OBD_PATH = REPO_ROOT / "data" / "obd" / "open_bandit_dataset_sample.tar.gz"

HILLSTROM_ARMS = ("Mens E-Mail", "Womens E-Mail", "No E-Mail")
#: what each arm "says" (embedded for the actor-critic's variant encoder)
HILLSTROM_TEXTS = {
    "Mens E-Mail": "E-mail campaign featuring men's merchandise",
    "Womens E-Mail": "E-mail campaign featuring women's merchandise",
    "No E-Mail": "No e-mail is sent to the customer",
}
HILLSTROM_SCHEMA = FeatureSchema(
    numeric={
        "recency": (6.0, 3.5),
        "log_history": (5.0, 1.0),  # log1p(history), derived on load
        "mens": (0.5, 0.5),
        "womens": (0.5, 0.5),
        "newbie": (0.5, 0.5),
    },
    categorical={
        "zip_code": ("Urban", "Surburban", "Rural"),
        "channel": ("Phone", "Web", "Multichannel"),
        "history_segment": (
            "1) $0 - $100",
            "2) $100 - $200",
            "3) $200 - $350",
            "4) $350 - $500",
            "5) $500 - $750",
            "6) $750 - $1,000",
            "7) $1,000 +",
        ),
    },
)
REWARDS = ("visit", "spend", "click", "conversion")


@dataclass
class LoggedBandit:
    """Logged decisions: portrait states ``X`` (n, d), logged arm index, reward, logging propensity."""

    name: str
    arms: tuple[str, ...]
    X: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    schema: FeatureSchema
    arm_texts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.actions)
        for name in ("X", "rewards", "propensities"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{self.name}: {name} has {len(getattr(self, name))} rows, actions has {n}")
        if n and (self.actions.min() < 0 or self.actions.max() >= len(self.arms)):
            raise ValueError(f"{self.name}: action index outside 0..{len(self.arms) - 1}")
        if n and not np.all((self.propensities > 0) & (self.propensities <= 1)):
            bad = int(np.flatnonzero(~((self.propensities > 0) & (self.propensities <= 1)))[0])
            raise ValueError(f"{self.name}: row {bad}: propensity must be in (0, 1]")

    def __len__(self) -> int:
        return len(self.actions)

    def subset(self, idx: np.ndarray) -> LoggedBandit:
        return LoggedBandit(
            self.name,
            self.arms,
            self.X[idx],
            self.actions[idx],
            self.rewards[idx],
            self.propensities[idx],
            self.schema,
            self.arm_texts,
        )


def load_hillstrom(path: Path = HILLSTROM_PATH, reward: str = "visit") -> LoggedBandit:
    """Hillstrom's randomized e-mail campaign: 3 arms, uniform logging (propensity 1/3).

    ``reward``: ``visit`` (the e-mail's click-through; ``click`` is an alias), ``conversion``, ``spend``.
    """
    import csv

    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    col = "visit" if reward == "click" else reward
    enc = PortraitEncoder(HILLSTROM_SCHEMA)
    arm_idx = {a: i for i, a in enumerate(HILLSTROM_ARMS)}
    X, A, R = [], [], []
    with gzip.open(path, "rt", newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                vals = {
                    "recency": float(row["recency"]),
                    "log_history": float(np.log1p(float(row["history"]))),
                    "mens": float(row["mens"]),
                    "womens": float(row["womens"]),
                    "newbie": float(row["newbie"]),
                    "zip_code": row["zip_code"],
                    "channel": row["channel"],
                    "history_segment": row["history_segment"],
                }
                A.append(arm_idx[row["segment"]])
                R.append(float(row[col]))
            except (KeyError, ValueError) as e:
                raise ValueError(f"{path}: line {i}: bad or missing field {e}") from None
            X.append(enc.encode_values(vals))
    n = len(A)
    return LoggedBandit(
        "hillstrom",
        HILLSTROM_ARMS,
        np.stack(X),
        np.array(A),
        np.array(R),
        np.full(n, 1.0 / 3.0),
        HILLSTROM_SCHEMA,
        dict(HILLSTROM_TEXTS),
    )


def load_obd(path: Path = OBD_PATH, behavior: str = "random", campaign: str = "all") -> LoggedBandit:
    """Open Bandit Dataset sample: items as arms, click reward, logged propensities, hashed user features.

    ``behavior`` is the logging policy (``random`` or ``bts``), ``campaign`` one of all/men/women. Position is
    ignored (the estimators here are for a single slot; every position's impressions count as rows).
    """
    import csv

    if behavior not in ("random", "bts") or campaign not in ("all", "men", "women"):
        raise ValueError("behavior must be random|bts and campaign all|men|women")
    with tarfile.open(path) as tar:
        member = tar.extractfile(f"obd/{behavior}/{campaign}/{campaign}.csv")
        if member is None:
            raise ValueError(f"{path}: no obd/{behavior}/{campaign}/{campaign}.csv")
        rows = list(csv.DictReader(io.TextIOWrapper(member, encoding="utf-8")))
    if not rows:
        raise ValueError(f"{path}: obd/{behavior}/{campaign}: no rows")
    users = [c for c in rows[0] if c.startswith("user_feature_")]
    schema = FeatureSchema(hashed=tuple(users), hash_dim=32)
    enc = PortraitEncoder(schema)
    try:
        X = np.stack([enc.encode_values({u: r[u] for u in users}) for r in rows])
        items = np.array([int(r["item_id"]) for r in rows])
        clicks = np.array([float(r["click"]) for r in rows])
        props = np.array([float(r["propensity_score"]) for r in rows])
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: obd/{behavior}/{campaign}: bad or missing field {e}") from None
    arms = tuple(f"item{i}" for i in range(int(items.max()) + 1))
    return LoggedBandit(f"obd-{behavior}-{campaign}", arms, X, items, clicks, props, schema)
