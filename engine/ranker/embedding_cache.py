"""A disk cache of text embeddings keyed by model (or view) name and text hash.

Embedding the ~18k archive headlines with MiniLM takes minutes on a laptop CPU;
training, CV and evaluation all need them, so they are computed once and kept
under the git-ignored ``.abengine/cache/`` directory. Keys are
``sha1(model_name + "\\0" + text)`` so a change of encoder never reuses stale vectors.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_CACHE_DIR = Path(".abengine/cache")

EncodeFn = Callable[[Sequence[str]], np.ndarray]


def text_key(model_name: str, text: str) -> str:
    """Stable cache key of ``text`` under ``model_name``."""
    return hashlib.sha1(f"{model_name}\0{text}".encode()).hexdigest()


class EmbeddingCache:
    """Embeddings of texts, persisted as one ``.npz`` per model.

    ``encode`` only calls the model for texts not yet cached, in one batch, and
    saves the file again when something was added.
    """

    def __init__(
        self, model_name: str, encode_fn: EncodeFn | None = None, cache_dir: Path = DEFAULT_CACHE_DIR
    ) -> None:
        self.model_name = model_name
        self._encode_fn = encode_fn
        slug = model_name.replace("/", "__").replace(":", "__")
        self.path = Path(cache_dir) / f"embeddings-{slug}.npz"
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}
        self._vecs = np.zeros((0, 0), dtype=np.float32)
        if self.path.exists():
            with np.load(self.path) as f:
                keys = f["keys"]
                self._vecs = f["vecs"].astype(np.float32)
            self._index = {str(k): i for i, k in enumerate(keys)}

    def __len__(self) -> int:
        return len(self._index)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` in order (float32, one row per text)."""
        keys = [text_key(self.model_name, t) for t in texts]
        with self._lock:
            todo: dict[str, str] = {}
            for k, t in zip(keys, texts, strict=True):
                if k not in self._index and k not in todo:
                    todo[k] = t
            if todo:
                if self._encode_fn is None:
                    raise RuntimeError(f"{len(todo)} texts are not cached and no encoder was given")
                new = np.asarray(self._encode_fn(list(todo.values())), dtype=np.float32)
                base = len(self._index)
                self._vecs = new if base == 0 else np.vstack([self._vecs, new])
                for j, k in enumerate(todo):
                    self._index[k] = base + j
                self._save()
            return self._vecs[[self._index[k] for k in keys]]

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self._index, key=self._index.__getitem__))
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vecs=self._vecs)
        tmp.replace(self.path)


def minilm_cache(cache_dir: Path = DEFAULT_CACHE_DIR, show_progress: bool = False) -> EmbeddingCache:
    """The MiniLM sentence-embedding cache backed by :func:`engine.embeddings.default_embedder`."""
    from engine.embeddings import MODEL_NAME

    def _encode(texts: Sequence[str]) -> np.ndarray:
        from engine.embeddings import default_embedder

        return default_embedder().encode(texts, show_progress=show_progress)

    return EmbeddingCache(MODEL_NAME, _encode, cache_dir)


def layer_means_cache(cache_dir: Path = DEFAULT_CACHE_DIR, show_progress: bool = False) -> EmbeddingCache:
    """The cache of MiniLM layer means (the ranker's features, 2,688-d), same process-wide model."""
    from engine.embeddings import LAYER_MEANS_NAME

    def _encode(texts: Sequence[str]) -> np.ndarray:
        from engine.embeddings import default_embedder

        return default_embedder().encode_layers(texts, show_progress=show_progress)

    return EmbeddingCache(LAYER_MEANS_NAME, _encode, cache_dir)
