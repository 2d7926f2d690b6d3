"""One encoder per modality: user portrait, request context text, user memory, variant text.

Encoders are pure and cheap on the hot path: text is embedded off the hot path (variants on registration,
context texts in batches via :meth:`ContextTextEncoder.embed_pending`), and the hot path only reads caches.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from engine.perception.schema import FeatureSchema
from engine.types import DecisionContext, FeatureValue

if TYPE_CHECKING:
    from engine.memory.model import MemoryView


class TextEmbedder(Protocol):
    """What perception needs from :class:`engine.embeddings.Embedder` (so tests can pass a real one)."""

    dim: int

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...

    def cached(self, text: str) -> np.ndarray | None: ...


@runtime_checkable
class Encoder(Protocol):
    """A modality: a fixed-width float32 vector per decision context."""

    name: str
    dim: int

    def encode(self, ctx: DecisionContext, memory: MemoryView | None) -> np.ndarray: ...


def random_projection(in_dim: int, out_dim: int, seed: int) -> np.ndarray:
    """A fixed orthonormal-column projection (Johnson-Lindenstrauss), reproducible from ``seed``."""
    g = np.random.default_rng(seed).standard_normal((in_dim, out_dim))
    q, _ = np.linalg.qr(g)
    return (q * np.sqrt(in_dim / out_dim)).astype(np.float32)


def _sign_hash(token: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return h % dim, 1.0 if (h >> 63) & 1 else -1.0


class PortraitEncoder:
    """Declared user attributes: standardised numerics, one-hot categories, sign-hashed high-cardinality ones.

    >>> schema = FeatureSchema(numeric={"age": (40.0, 10.0)}, categorical={"ch": ("web", "app")})
    >>> enc = PortraitEncoder(schema)
    >>> enc.encode_values({"age": 50, "ch": "app"}).tolist()
    [1.0, 0.0, 1.0]
    """

    name = "portrait"

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.dim = schema.dim
        self._cat_index: dict[str, dict[str, int]] = {}
        off = len(schema.numeric)
        for name, levels in schema.categorical.items():
            self._cat_index[name] = {str(level): off + i for i, level in enumerate(levels)}
            off += len(levels)
        self._hash_off = off
        self._num_index = {name: i for i, name in enumerate(schema.numeric)}
        self._hash_cache: dict[str, tuple[int, float]] = {}

    def encode_values(self, values: Mapping[str, FeatureValue]) -> np.ndarray:
        x = np.zeros(self.dim, dtype=np.float32)
        for name, value in values.items():
            i = self._num_index.get(name)
            if i is not None:
                center, scale = self.schema.numeric[name]
                x[i] = min(5.0, max(-5.0, (float(value) - center) / scale))
                continue
            idx = self._cat_index.get(name)
            if idx is not None:
                j = idx.get(str(value))
                if j is not None:
                    x[j] = 1.0
                continue
            if name in self.schema.hashed:
                token = f"{name}={value}"
                hit = self._hash_cache.get(token)
                if hit is None:
                    hit = _sign_hash(token, self.schema.hash_dim)
                    if len(self._hash_cache) < 1_000_000:
                        self._hash_cache[token] = hit
                x[self._hash_off + hit[0]] += hit[1]
        return x

    def encode(self, ctx: DecisionContext, memory: MemoryView | None = None) -> np.ndarray:
        if ctx.features:
            return self.encode_values({**ctx.attributes, **ctx.features})
        return self.encode_values(ctx.attributes)


class ContextTextEncoder:
    """Request free text (query, page, campaign) as a projected MiniLM embedding plus a "present" flag.

    :meth:`encode` never calls the model: an uncached text encodes as zeros (flag 0) and is queued; the
    caller runs :meth:`embed_pending` off the hot path (one batched model call).
    """

    name = "context"

    def __init__(
        self,
        embedder: TextEmbedder | None,
        proj_dim: int = 8,
        seed: int = 0,
        max_pending: int = 10_000,
        max_rows: int = 16_384,
    ):
        self.embedder = embedder
        self.proj_dim = proj_dim
        self.dim = proj_dim + 1
        self._proj = random_projection(384 if embedder is None else embedder.dim, proj_dim, seed + 101)
        self._pending: dict[str, None] = {}
        self._max_pending = max_pending
        self.misses = 0
        # encoded rows by text, so a recurring context costs a dict lookup instead of a 384 x proj_dim
        # product per decision; read-only (callers copy them into the state), oldest dropped when full
        # (~300 bytes a row with its key: ~5 MB per allocator at the default bound, beside the
        # embedder's shared cache of 100,000 raw 384-d vectors)
        self._rows: dict[str, np.ndarray] = {}
        self._max_rows = max_rows
        self._empty = np.zeros(self.dim, dtype=np.float32)
        self._empty.flags.writeable = False

    def encode_text(self, text: str | None) -> np.ndarray:
        """The text's row (read-only): zeros while its embedding is not cached (then it is queued)."""
        if not text or self.embedder is None:
            return self._empty
        row = self._rows.get(text)
        if row is not None:
            return row
        vec = self.embedder.cached(text)
        if vec is None:
            self.misses += 1
            if len(self._pending) < self._max_pending:
                self._pending[text] = None
            return self._empty
        row = np.zeros(self.dim, dtype=np.float32)
        row[: self.proj_dim] = vec @ self._proj
        row[-1] = 1.0
        row.flags.writeable = False
        if len(self._rows) >= self._max_rows:
            del self._rows[next(iter(self._rows))]
        self._rows[text] = row
        return row

    def encode(self, ctx: DecisionContext, memory: MemoryView | None = None) -> np.ndarray:
        return self.encode_text(ctx.context_text)

    def pending_texts(self) -> list[str]:
        return list(self._pending)

    def embed_pending(self) -> int:
        """Embed every queued text in one batch (call off the hot path); returns how many."""
        texts = list(self._pending)
        if texts and self.embedder is not None:
            self.embedder.encode(texts)
        self._pending.clear()
        return len(texts)


class MemorySummaryEncoder:
    """The user's memory as a fixed-width vector: how much history, mean reward, recency-weighted reward."""

    name = "memory"
    dim = 3

    def __init__(self, half_life: float = 10.0) -> None:
        self.half_life = half_life
        self._w = np.zeros(0)  # recency weights, newest last, grown on demand (not per request)
        self._totals = np.zeros(0)

    def _weights(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Recency weights of ``n`` records, oldest first, the newest 1, and ``totals[k - 1]``, the sum of
        the newest ``k`` of them (grown once, not per request)."""
        if len(self._w) < n:
            self._w = 0.5 ** (np.arange(max(n, 64))[::-1] / self.half_life)
            self._totals = np.cumsum(self._w[::-1])
        return self._w[-n:], self._totals

    def encode(self, ctx: DecisionContext | None, memory: MemoryView | None) -> np.ndarray:
        """One memory, as the maths reads (a third of :meth:`encode_many`'s cost for a lone decision)."""
        out = np.zeros(self.dim, dtype=np.float32)
        if memory is None or len(memory) == 0:
            return out
        r = memory.rewards
        n = len(r)
        w = self._weights(n)[0]
        out[0] = math.log1p(n) / 5.0
        out[1] = float(r.sum()) / n
        out[2] = float(w @ r) / float(w.sum())
        return out

    def encode_many(
        self, ctxs: Sequence[DecisionContext | None], memories: Sequence[MemoryView | None]
    ) -> np.ndarray:
        """:meth:`encode` of many memories (B, 3) from one (B, n) matrix of their rewards, newest in the
        last column: a shorter memory is padded with zeros on the left, which add nothing to its sums."""
        lens = np.array([0 if m is None else len(m) for m in memories])
        out = np.zeros((len(memories), self.dim), dtype=np.float32)
        n = int(lens.max(initial=0))
        if n == 0:
            return out
        R = np.zeros((len(memories), n))
        for i, m in enumerate(memories):
            if lens[i]:
                R[i, n - lens[i] :] = m.rewards  # type: ignore[union-attr]
        w, totals = self._weights(n)
        k = np.maximum(lens, 1)  # a row without memory stays zeros: its sums are 0
        out[:, 0] = np.log1p(lens) / 5.0
        out[:, 1] = R.sum(axis=1) / k
        out[:, 2] = (R @ w) / totals[k - 1]
        return out


class VariantEncoder:
    """Variant texts embedded once (on registration) and projected to ``proj_dim``; never at decision time."""

    def __init__(self, embedder: TextEmbedder | None, proj_dim: int = 8, seed: int = 0) -> None:
        self.embedder = embedder
        self.proj_dim = proj_dim
        self.seed = seed
        self._proj = random_projection(384, proj_dim, seed + 202)
        self.raw: dict[str, np.ndarray] = {}
        self.projected: dict[str, np.ndarray] = {}

    def add(self, variant_id: str, text: str | None = None, embedding: np.ndarray | None = None) -> None:
        """Register a variant from its text (embedded now) or a precomputed 384-d embedding."""
        if embedding is None:
            if text is None:
                raise ValueError(f"variant {variant_id!r}: needs a text or an embedding")
            if self.embedder is None:
                raise ValueError(f"variant {variant_id!r}: no embedder to embed its text")
            embedding = self.embedder.encode([text])[0]
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if e.shape[0] != self._proj.shape[0] or not np.all(np.isfinite(e)):
            raise ValueError(f"variant {variant_id!r}: embedding must be {self._proj.shape[0]} finite floats")
        self.raw[variant_id] = e
        p = e @ self._proj
        self.projected[variant_id] = (p / max(float(np.linalg.norm(p)), 1e-8)).astype(np.float32)

    def matrix(self, variant_ids: Sequence[str]) -> np.ndarray:
        try:
            return np.stack([self.projected[v] for v in variant_ids])
        except KeyError as e:
            raise ValueError(
                f"variant {e.args[0]!r} has no embedding; register it with add_variant"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "proj_dim": self.proj_dim,
            "seed": self.seed,
            "raw": {k: v.tolist() for k, v in self.raw.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], embedder: TextEmbedder | None = None) -> VariantEncoder:
        enc = cls(embedder, proj_dim=int(d["proj_dim"]), seed=int(d["seed"]))
        for k, v in d["raw"].items():
            enc.add(k, embedding=np.asarray(v, dtype=np.float32))
        return enc
