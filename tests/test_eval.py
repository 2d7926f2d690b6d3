"""Offline evaluation: OPE estimators, replay, simulator, loaders and the CLI's error handling."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from engine.evaluation.baselines import FixedArmPolicy, ThompsonPolicy, UniformPolicy
from engine.evaluation.cli import eval_group
from engine.evaluation.datasets import LoggedBandit, load_obd
from engine.evaluation.ope import IPS, SNIPS, DoublyRobust, fit_reward_model
from engine.evaluation.replay import replay
from engine.evaluation.simulator import HeterogeneousSimulator, SimulatorConfig
from engine.memory.model import TIME_ORIGIN_S
from engine.perception.schema import FeatureSchema


def _logged(n: int = 30000, seed: int = 0) -> tuple[LoggedBandit, np.ndarray]:
    """Uniformly logged 3-arm data; arm 1 is best for x0 = 1, arm 0 otherwise."""
    rng = np.random.default_rng(seed)
    X = rng.integers(2, size=(n, 1)).astype(float)
    mean = np.stack([np.full(n, 0.3), 0.1 + 0.5 * X[:, 0], np.full(n, 0.1)], axis=1)
    a = rng.integers(3, size=n)
    r = (rng.random(n) < mean[np.arange(n), a]).astype(float)
    return LoggedBandit("toy", ("a", "b", "c"), X, a, r, np.full(n, 1 / 3), FeatureSchema()), mean


def test_ope_estimators_recover_known_policy_value() -> None:
    data, mean = _logged()
    target = np.zeros_like(mean)
    best = mean.argmax(1)
    target[np.arange(len(best)), best] = 1.0
    truth = mean.max(1).mean()
    q = fit_reward_model(data.X, data.actions, data.rewards, 3)(data.X)
    for est in (IPS(), SNIPS(), DoublyRobust()):
        e = est.estimate(data.actions, data.rewards, data.propensities, target, q)
        assert abs(e.value - truth) < 4 * e.stderr + 1e-3, est.name
    uniform = np.full_like(mean, 1 / 3)
    assert IPS().estimate(data.actions, data.rewards, data.propensities, uniform).value == pytest.approx(
        data.rewards.mean()
    )
    with pytest.raises(ValueError, match="q_hat"):
        DoublyRobust().estimate(data.actions, data.rewards, data.propensities, target)
    with pytest.raises(ValueError, match="row 0"):
        IPS().estimate(data.actions, data.rewards, np.zeros(len(data)), target)


def test_replay_matches_a_third_and_values_fixed_arms() -> None:
    data, mean = _logged()
    order = np.random.default_rng(1).permutation(len(data))
    res = replay(FixedArmPolicy(3, 1), data, order, np.random.default_rng(2))
    assert abs(len(res.rewards) / len(data) - 1 / 3) < 0.02
    assert res.mean_reward == pytest.approx(mean[:, 1].mean(), abs=0.02)
    ts = replay(ThompsonPolicy(3, seed=0), data, order, np.random.default_rng(2))
    assert ts.mean_reward > replay(UniformPolicy(3), data, order, np.random.default_rng(2)).mean_reward
    swapped = replay(
        FixedArmPolicy(3, 1),
        data,
        order,
        np.random.default_rng(2),
        arm_permutation_after=(len(data) // 2, np.array([1, 0, 2])),
    )
    assert swapped.mean_after(len(data) // 2) == pytest.approx(mean[:, 0].mean(), abs=0.03)


def test_simulator_oracle_has_zero_regret_and_uniform_does_not() -> None:
    sim = HeterogeneousSimulator(SimulatorConfig(horizon=2000, n_users=50), seed=0)

    class Oracle:
        def act_batch(self, S, users, now=0.0):
            u = np.array([int(x[4:]) for x in users])
            start = int(now - TIME_ORIGIN_S)  # the simulator's clock: position 0 at the memory's time origin
            t = np.arange(start, start + len(u))
            er = sim.expected_reward(u, t)
            p = np.zeros_like(er)
            p[np.arange(len(u)), er.argmax(1)] = 1.0
            return p

        def learn_batch(self, *a, **k):
            return None

    assert sim.run(Oracle()).cumulative_regret == pytest.approx(0.0)
    res = sim.run(UniformPolicy(sim.cfg.n_variants))
    assert res.cumulative_regret > 100
    assert len(res.rewards) == 2000


def test_obd_loader_and_estimators_on_real_sample() -> None:
    rnd = load_obd(behavior="random")
    assert len(rnd) == 10000 and len(rnd.arms) == 80 and rnd.X.shape == (10000, 32)
    K = len(rnd.arms)
    e = SNIPS().estimate(rnd.actions, rnd.rewards, rnd.propensities, np.full((len(rnd), K), 1 / K))
    assert e.value == pytest.approx(rnd.rewards.mean())


def test_cli_help_and_bad_policy_name() -> None:
    runner = CliRunner()
    res = runner.invoke(eval_group, ["policies", "--help"])
    assert res.exit_code == 0 and "--dataset" in res.output and "--json" in res.output
    res = runner.invoke(eval_group, ["policies", "--dataset", "hillstrom", "--policies", "nope"])
    assert res.exit_code == 2 and "unknown policy nope" in res.output
    res = runner.invoke(eval_group, ["policies", "--dataset", "simulator", "--reward", "spend"])
    assert res.exit_code == 2 and "--reward" in res.output


def test_logged_bandit_validation_names_the_row() -> None:
    with pytest.raises(ValueError, match="row 1: propensity"):
        LoggedBandit(
            "x",
            ("a",),
            np.zeros((2, 1)),
            np.zeros(2, int),
            np.zeros(2),
            np.array([0.5, 0.0]),
            FeatureSchema(),
        )
