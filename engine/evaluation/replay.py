"""Replay evaluation (Li, Chu, Langford, Wang 2011) of a learning policy on uniformly logged data.

The stream is read in order; the policy proposes an arm for each event and, when it matches the logged arm,
the event counts: its reward is the policy's reward and the policy learns from it. Under uniform logging the
matched events are an unbiased sample of what the policy would have seen online. The policy acts on frozen
parameters within a block of ``block`` events and learns after it (serving lags the learner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.evaluation.datasets import LoggedBandit
from engine.memory.model import TIME_ORIGIN_S


def clock(position: float | np.ndarray) -> float | np.ndarray:
    """A stream position as the epoch time a policy sees (one position a second from the memory's time
    origin): memory records hold these times exactly, where positions taken as seconds since 1970 would be
    rounded to 128 s (:data:`engine.memory.model.TIME_ORIGIN_S`)."""
    return TIME_ORIGIN_S + position


def full_states(policy: object, X: np.ndarray, users: list[str], now: float | np.ndarray) -> np.ndarray:
    """Portrait rows expanded to the policy's state (context/memory blocks) when it has one."""
    expand = getattr(policy, "expand_portrait", None)
    return X if expand is None else expand(X, users, now)


class BatchPolicy(Protocol):
    def act_batch(self, states: np.ndarray, users=None, now: float = 0.0) -> np.ndarray: ...

    def learn_batch(self, states, actions, rewards, propensities, users=None, times=None) -> None: ...


@dataclass
class ReplayResult:
    """Per matched event: its position in the stream, the arm served, and the reward."""

    positions: np.ndarray
    arms: np.ndarray
    rewards: np.ndarray

    @property
    def mean_reward(self) -> float:
        return float(self.rewards.mean()) if len(self.rewards) else float("nan")

    def mean_after(self, position: int) -> float:
        m = self.positions >= position
        return float(self.rewards[m].mean()) if m.any() else float("nan")


def replay(
    policy: BatchPolicy,
    data: LoggedBandit,
    order: np.ndarray,
    rng: np.random.Generator,
    block: int = 50,
    arm_permutation_after: tuple[int, np.ndarray] | None = None,
) -> ReplayResult:
    """Replay ``data`` in ``order``; ``arm_permutation_after = (t, perm)`` relabels logged arm ``k`` as
    ``perm[k]`` from stream position ``t`` on (the drift scenario: real rewards, permuted arm identities)."""
    if not np.allclose(data.propensities, data.propensities[0]):
        raise ValueError(f"{data.name}: replay needs uniform logging (constant propensity)")
    pos_out, arm_out, rew_out = [], [], []
    n = len(order)
    for lo in range(0, n, block):
        idx = order[lo : lo + block]
        pos = np.arange(lo, lo + len(idx))
        logged = data.actions[idx]
        if arm_permutation_after is not None:
            t_swap, perm = arm_permutation_after
            logged = np.where(pos >= t_swap, perm[logged], logged)
        users = [f"u{i}" for i in idx]
        S = full_states(policy, data.X[idx], users, clock(lo))
        probs = policy.act_batch(S, users, now=clock(lo))
        cum = probs.cumsum(axis=1)
        choice = (rng.random((len(idx), 1)) < cum).argmax(axis=1)
        m = choice == logged
        if not m.any():
            continue
        r = data.rewards[idx][m]
        pos_out.append(pos[m])
        arm_out.append(choice[m])
        rew_out.append(r)
        policy.learn_batch(
            S[m],
            choice[m],
            r,
            probs[m, choice[m]],
            [u for u, k in zip(users, m, strict=True) if k],
            clock(pos[m].astype(float)),
        )

    def cat(xs: list[np.ndarray], dt: type) -> np.ndarray:
        return np.concatenate(xs) if xs else np.zeros(0, dt)

    return ReplayResult(cat(pos_out, int), cat(arm_out, int), cat(rew_out, float))
