"""The memory of rewarded interactions and the attention read over it (pure: no I/O).

A record is one rewarded decision: ``[e_v (k floats), reward, time]`` where ``e_v`` is the chosen variant's
projected text embedding and ``time`` is float32 seconds since :data:`TIME_ORIGIN_S` (:func:`record_time`).
A memory keeps the last ``N`` records. Reading it for a candidate variant ``v`` is attention over the
records (keys = variant embeddings, values = rewards):

    w_i = exp(beta * (cos(e_v, e_i) - 1) - lam * age_i)
    read(v) = (sum_i w_i r_i + w_0 r_0) / (sum_i w_i + w_0)

so interactions with similar variants and recent ones count most, and an empty memory reads the prior ``r_0``.
``beta`` and ``lam`` are learned by the actor-critic through the torch twin :func:`attention_read_torch`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: Record times are float32 seconds since this origin (2026-01-01T00:00:00Z), not since the Unix epoch:
#: float32 has a 24-bit significand, so epoch seconds (~1.8e9) step by 128 s, which quantised every age
#: the attention's recency weight sees to 128 s (a weight of 0.73 a step at the initial ``lam``). From
#: this origin a step is 2 s until 2027-01-24, 4 s until 2028-02-16 and 8 s until 2030-04-03 (2^25,
#: 2^26, 2^27 s after it). Moving it is a new :data:`RECORD_FORMAT`.
TIME_ORIGIN_S = 1_767_225_600.0
#: Layout of a stored record (in the Redis key, :meth:`engine.store.keys.Keys.memory`, so memories of
#: another layout are never read): 1 = epoch-second times, 2 = times since :data:`TIME_ORIGIN_S`.
RECORD_FORMAT = 2


def record_time(t: float | np.ndarray) -> np.ndarray:
    """Epoch seconds -> a record's time (float32 seconds since :data:`TIME_ORIGIN_S`).

    >>> float(record_time(TIME_ORIGIN_S + 90.5))
    90.5
    """
    return (np.asarray(t, np.float64) - TIME_ORIGIN_S).astype(np.float32)


@dataclass(frozen=True, slots=True)
class MemoryView:
    """A read-only memory: ``records`` has shape (n, k + 2), oldest first."""

    records: np.ndarray

    def __post_init__(self) -> None:
        if self.records.ndim != 2 or self.records.shape[1] < 3:
            raise ValueError(f"memory records must be (n, k+2), got shape {self.records.shape}")

    def __len__(self) -> int:
        return int(self.records.shape[0])

    @property
    def keys(self) -> np.ndarray:
        return self.records[:, :-2]

    @property
    def rewards(self) -> np.ndarray:
        return self.records[:, -2]

    @property
    def times(self) -> np.ndarray:
        """Record times in epoch seconds (float64; stored to a float32 step, :data:`TIME_ORIGIN_S`)."""
        return self.records[:, -1].astype(np.float64) + TIME_ORIGIN_S

    def before(self, t: float) -> MemoryView:
        """The memory as it was at epoch time ``t`` (records strictly earlier): no peeking at later rewards.

        ``t`` is rounded to a record's time (:func:`record_time`) before comparing, so a decision's own
        record never counts as earlier than it (compared unrounded, it got in about half the time); the
        price is that records less than one float32 step (2-8 s, :data:`TIME_ORIGIN_S`) before ``t`` are
        left out too.
        """
        t32 = record_time(t)
        stored = self.records[:, -1]
        if len(self) == 0 or stored[-1] < t32:
            return self
        return MemoryView(self.records[stored < t32])


def make_records(keys: np.ndarray, rewards: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Records (n, k + 2) from variant keys (n, k), rewards (n,) and epoch-second times (n,)."""
    return np.concatenate(
        [
            np.asarray(keys, np.float32),
            np.asarray(rewards, np.float32)[:, None],
            record_time(times)[:, None],
        ],
        axis=1,
    )


class MemoryBank:
    """In-process bounded memories keyed by user (LRU over keys, last ``max_len`` records per key, TTL).

    Same shape of interface as :class:`engine.memory.store.UserMemoryStore`, used by the learner and by
    offline evaluation.
    """

    def __init__(
        self, width: int, max_len: int = 32, max_keys: int = 100_000, ttl: float | None = None
    ) -> None:
        self.width = width
        self.max_len = max_len
        self.max_keys = max_keys
        self.ttl = ttl
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, now: float | None = None) -> MemoryView | None:
        rec = self._data.get(key)
        if rec is None:
            return None
        ttl_applies = self.ttl is not None and now is not None and rec.shape[0] > 0
        if ttl_applies and record_time(now) - rec[-1, -1] > self.ttl:
            del self._data[key]
            return None
        return MemoryView(rec)

    def get_many(self, keys: Iterable[str], now: float | None = None) -> dict[str, MemoryView | None]:
        return {k: self.get(k, now) for k in keys}

    def append(self, key: str, records: np.ndarray) -> None:
        records = np.asarray(records, np.float32).reshape(-1, self.width)
        old = self._data.pop(key, None)
        if old is None:  # common case (a new or evicted user): no concatenation
            self._data[key] = records[-self.max_len :].copy()
        else:
            self._data[key] = np.concatenate([old, records])[-self.max_len :]
        while len(self._data) > self.max_keys:
            self._data.popitem(last=False)

    def put_many(self, items: Mapping[str, np.ndarray]) -> None:
        for k, v in items.items():
            self.append(k, v)


def attention_read(
    cand: np.ndarray,
    memory: MemoryView | None,
    now: float,
    beta: float,
    lam: float,
    r0: float,
    w0: float = 1.0,
) -> np.ndarray:
    """Read one memory for candidate keys ``cand`` (K, k) at epoch time ``now``: returns (K, 2)
    ``[read(v) - r0, log1p(mass) / 5]``.

    Each record i weighs ``w_i = exp(beta (cos(v, k_i) - 1) - lam age_i)``; the read is the weighted mean
    of the records' rewards shrunk towards the prior ``r0`` with weight ``w0``. One memory is a batch of
    one: :func:`attention_read_batch` holds the maths.
    """
    if memory is None or len(memory) == 0:
        return np.zeros((cand.shape[0], 2), dtype=np.float32)
    return attention_read_batch(cand, memory.records[None], None, now, beta, lam, r0, w0)[0]


def attention_read_batch(
    cand: np.ndarray,
    recs: np.ndarray,
    mask: np.ndarray | None,
    now: float,
    beta: float,
    lam: float,
    r0: float,
    w0: float = 1.0,
) -> np.ndarray:
    """:func:`attention_read` for B memories at once (padded by :func:`pad_memories`): cand (K, k), recs
    (B, N, k+2), mask (B, N) or None when every record is real -> (B, K, 2). Several decisions served
    together pay numpy's per-call cost once instead of once each; an all-masked row reads like an empty
    memory (zeros)."""
    keys, r, t = recs[..., :-2], recs[..., -2], recs[..., -1]  # t: record times (:func:`record_time`)
    # batched matmuls, not einsum: the same sums at a third of the cost for a round of 32 (PERFORMANCE.md)
    cos = np.matmul(cand, keys.transpose(0, 2, 1))  # (B, K, N)
    # now on the records' grid, as the learner's torch twin sees it: serving and learning read the same ages
    age = np.maximum(record_time(now) - t, 0.0)[:, None, :]
    w = np.exp(beta * (cos - 1.0) - lam * age)
    if mask is not None:
        w *= mask[:, None, :]
    mass = w.sum(-1)
    out = np.empty((recs.shape[0], cand.shape[0], 2), dtype=np.float32)
    out[..., 0] = (np.matmul(w, r[:, :, None])[..., 0] + w0 * r0) / (mass + w0) - r0
    out[..., 1] = np.log1p(mass) / 5.0
    return out


def pad_memories(
    memories: Sequence[MemoryView | None], width: int, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stack memories into (B, N, width) records and a (B, N) mask (for batched torch reads)."""
    n = max([len(m) for m in memories if m is not None] + [1])
    n = min(n, max_len)
    recs = np.zeros((len(memories), n, width), dtype=np.float32)
    mask = np.zeros((len(memories), n), dtype=np.float32)
    for i, m in enumerate(memories):
        if m is None or len(m) == 0:
            continue
        r = m.records[-n:]
        recs[i, : len(r)] = r
        mask[i, : len(r)] = 1.0
    return recs, mask


def attention_read_torch(
    cand: torch.Tensor,
    recs: torch.Tensor,
    mask: torch.Tensor,
    now: torch.Tensor,
    beta: torch.Tensor,
    lam: torch.Tensor,
    r0: float,
    w0: float = 1.0,
) -> torch.Tensor:
    """Torch twin of :func:`attention_read`, batched: cand (B, K, k), recs (B, N, k+2) -> (B, K, 2); ``now``
    (B,) is in record time (:func:`record_time`), not epoch seconds (float32 would round those to 128 s)."""
    keys, r, t = recs[..., :-2], recs[..., -2], recs[..., -1]
    cos = torch.einsum("bkd,bnd->bkn", cand, keys)
    age = torch.clamp(now[:, None] - t, min=0.0)[:, None, :]
    w = torch.exp(beta * (cos - 1.0) - lam * age) * mask[:, None, :]
    mass = w.sum(-1)
    read = (torch.einsum("bkn,bn->bk", w, r) + w0 * r0) / (mass + w0) - r0
    return torch.stack([read, torch.log1p(mass) / 5.0], dim=-1)
