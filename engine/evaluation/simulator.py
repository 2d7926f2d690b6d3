"""A heterogeneous-user simulator where personalization matters and the optimum is known (so regret is exact).

Population (defaults in :class:`SimulatorConfig`): ``n_users`` users in ``n_segments`` segments; a user's
segment is an attribute, observed correctly with probability ``segment_accuracy`` (otherwise a random one);
two numeric attributes are pure noise. There are ``n_variants`` variants with distinct texts.

* click probability of user u for variant v: ``p = base + seg_lift [v == pref(segment(u))]
  + personal_lift [v == fav(u)]`` where ``fav(u)`` is a hidden personal favourite (only the user's own
  history reveals it);
* drift at ``drift_at`` (fraction of the horizon): each segment's preferred variant moves to the next one, and
  a fraction ``personal_redraw`` of users draw a new favourite;
* delayed conversions: a click converts with probability ``conv[v]`` (value 1), landing after an exponential
  delay of mean ``conv_delay`` decisions; a decision's window closes after ``window`` decisions;
* reward ``r = click + w conversion``; the oracle knows ``E[r | u, v, t]`` so regret is exact.

Users arrive uniformly at random, one decision per time step; policies act on frozen parameters within a
block of ``block`` decisions. Learners without provisional credit learn a decision once it is final
(conversion landed or window closed); learners with it (``uses_provisional``) learn at once with the estimated
conversion value and get a correcting sample when the decision becomes final.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.evaluation.replay import clock, full_states
from engine.perception.encoders import PortraitEncoder
from engine.perception.schema import FeatureSchema

SIM_TEXTS = (
    "Free shipping on your next order",
    "New arrivals: this season's jackets",
    "Members get 20% off today only",
    "Top rated running shoes for beginners",
    "Last chance: clearance ends tonight",
    "Gift ideas under $25",
    "Your weekly style picks",
    "Limited edition sneakers just dropped",
)


class SimulatorConfig(BaseModel):
    """Documented parameters of the heterogeneous simulator (defaults are the RESULTS.md scenario)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_users: int = Field(200, ge=1)
    n_segments: int = Field(3, ge=1)
    n_variants: int = Field(5, ge=2, le=len(SIM_TEXTS))
    horizon: int = Field(10000, ge=1)
    block: int = Field(100, ge=1)
    segment_accuracy: float = Field(0.95, ge=0.0, le=1.0)
    base: float = Field(0.05, ge=0.0, le=1.0)
    seg_lift: float = Field(0.3, ge=0.0)
    personal_lift: float = Field(0.1, ge=0.0)
    drift_at: float | None = Field(0.5, description="fraction of the horizon where preferences change")
    personal_redraw: float = Field(0.5, ge=0.0, le=1.0)
    conv: tuple[float, ...] = (0.3, 0.1, 0.2, 0.4, 0.15, 0.25, 0.35, 0.05)
    conv_delay: float = Field(100.0, gt=0.0)
    window: float = Field(500.0, gt=0.0)
    conversion_weight: float = Field(1.0, ge=0.0)


SIM_SCHEMA_FIELDS = ("segment", "x1", "x2")


def sim_schema(n_segments: int) -> FeatureSchema:
    return FeatureSchema(
        numeric={"x1": (0.0, 1.0), "x2": (0.0, 1.0)},
        categorical={"segment": tuple(f"s{g}" for g in range(n_segments))},
    )


@dataclass
class SimResult:
    """Per decision: time, arm, realised reward and expected regret against the oracle."""

    arms: np.ndarray
    rewards: np.ndarray
    regret: np.ndarray
    expected: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def cumulative_regret(self) -> float:
        return float(self.regret.sum())


class HeterogeneousSimulator:
    """Draws one population (seeded) and runs a policy through it; see the module doc for the model."""

    def __init__(self, config: SimulatorConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg = config or SimulatorConfig()
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.segment = rng.integers(cfg.n_segments, size=cfg.n_users)
        observed = np.where(
            rng.random(cfg.n_users) < cfg.segment_accuracy,
            self.segment,
            rng.integers(cfg.n_segments, size=cfg.n_users),
        )
        self.schema = sim_schema(cfg.n_segments)
        enc = PortraitEncoder(self.schema)
        noise = rng.standard_normal((cfg.n_users, 2))
        self.X = np.stack(
            [
                enc.encode_values({"segment": f"s{o}", "x1": a, "x2": b})
                for o, (a, b) in zip(observed, noise, strict=True)
            ]
        )
        self.pref0 = rng.permutation(cfg.n_variants)[: cfg.n_segments % cfg.n_variants or cfg.n_segments]
        self.pref0 = np.resize(rng.permutation(cfg.n_variants), cfg.n_segments)
        self.fav0 = rng.integers(cfg.n_variants, size=cfg.n_users)
        redraw = rng.random(cfg.n_users) < cfg.personal_redraw
        self.fav1 = np.where(redraw, rng.integers(cfg.n_variants, size=cfg.n_users), self.fav0)
        self.pref1 = (self.pref0 + 1) % cfg.n_variants
        self.conv = np.asarray(cfg.conv[: cfg.n_variants])
        self.arrivals = rng.integers(cfg.n_users, size=cfg.horizon)
        self.variant_ids = tuple(f"v{i}" for i in range(cfg.n_variants))
        self.variant_texts = dict(zip(self.variant_ids, SIM_TEXTS, strict=False))

    def click_probs(self, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        late = (t >= cfg.drift_at * cfg.horizon) if cfg.drift_at is not None else np.zeros(len(t), bool)
        pref = np.where(late, self.pref1[self.segment[users]], self.pref0[self.segment[users]])
        fav = np.where(late, self.fav1[users], self.fav0[users])
        v = np.arange(cfg.n_variants)[None, :]
        p = cfg.base + cfg.seg_lift * (v == pref[:, None]) + cfg.personal_lift * (v == fav[:, None])
        return np.clip(p, 0.0, 1.0)

    def expected_reward(self, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self.click_probs(users, t) * (1.0 + self.cfg.conversion_weight * self.conv[None, :])

    def run(self, policy, seed: int = 0) -> SimResult:
        cfg = self.cfg
        rng = np.random.default_rng(seed + 7919)
        T = cfg.horizon
        arms = np.zeros(T, int)
        rewards = np.zeros(T)
        regret = np.zeros(T)
        # pending decisions: (t, user, arm, prop, click, conv_value, conv_time, provisional?)
        pend_t: list[np.ndarray] = []
        provisional = bool(getattr(policy, "uses_provisional", False))
        state = {
            "t": np.zeros(0),
            "a": np.zeros(0, int),
            "p": np.zeros(0),
            "c": np.zeros(0),
            "cv": np.zeros(0),
            "ct": np.zeros(0),
            "u": np.zeros(0, int),
        }
        w = cfg.conversion_weight
        del pend_t
        for lo in range(0, T, cfg.block):
            t = np.arange(lo, min(T, lo + cfg.block))
            users = self.arrivals[t]
            names = [f"user{u}" for u in users]
            S = full_states(policy, self.X[users], names, clock(lo))
            probs = policy.act_batch(S, names, now=clock(lo))
            a = (rng.random((len(t), 1)) < probs.cumsum(axis=1)).argmax(axis=1)
            er = self.expected_reward(users, t)
            regret[t] = er.max(axis=1) - er[np.arange(len(t)), a]
            click = (rng.random(len(t)) < self.click_probs(users, t)[np.arange(len(t)), a]).astype(float)
            conv = click * (rng.random(len(t)) < self.conv[a])
            conv_t = t + rng.exponential(cfg.conv_delay, len(t))
            arms[t] = a
            rewards[t] = click + w * conv
            prop = probs[np.arange(len(t)), a]
            if provisional:  # learn now with the estimated conversion value of a click
                est = click * policy.conv_per_click[policy._slot_idx[a]]
                policy.learn_batch(S, a, click + w * est, prop, names, clock(t.astype(float)))
            state = {
                k: np.concatenate([state[k], v])
                for k, v in zip(
                    ("t", "a", "p", "c", "cv", "ct", "u"),
                    (t, a, prop, click, conv, conv_t, users),
                    strict=True,
                )
            }
            now = float(t[-1] + 1)
            # final: conversion landed, or window closed (a converted click lands before its window closes
            # only if its delay is shorter; after the window the conversion is lost, as in production)
            landed = (state["cv"] > 0) & (state["ct"] <= now) & (state["ct"] <= state["t"] + cfg.window)
            closed = state["t"] + cfg.window <= now
            final = landed | closed
            if final.any():
                f = {k: v[final] for k, v in state.items()}
                conv_counted = f["cv"] * (f["ct"] <= f["t"] + cfg.window)
                r_final = f["c"] + w * conv_counted
                fnames = [f"user{u}" for u in f["u"]]
                fS = full_states(policy, self.X[f["u"]], fnames, clock(f["t"].astype(float)))
                if provisional:
                    policy.learn_conversions(policy._slot_idx[f["a"]], f["c"], conv_counted)
                    est = f["c"] * 0  # the provisional credit already given for these decisions
                    changed = conv_counted > 0  # provisional was click + w * estimate; correct the converted
                    changed |= (f["c"] > 0) & ~changed
                    if changed.any():
                        policy.learn_batch(
                            fS[changed],
                            f["a"][changed],
                            r_final[changed],
                            f["p"][changed],
                            [n for n, k in zip(fnames, changed, strict=True) if k],
                            clock(f["t"][changed].astype(float)),
                        )
                    del est
                else:
                    policy.learn_batch(fS, f["a"], r_final, f["p"], fnames, clock(f["t"].astype(float)))
                state = {k: v[~final] for k, v in state.items()}
        return SimResult(arms, rewards, regret)
