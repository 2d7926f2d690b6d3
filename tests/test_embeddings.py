"""The two MiniLM views from one model: sentence embeddings and layer means (real model, offline)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.embeddings import (
    EMBEDDING_DIM,
    LAYER_MEANS_DIM,
    N_LAYER_BLOCKS,
    SENTENCE_BLOCK,
    default_embedder,
)

TEXTS = ["You Won't Believe What This Teacher Did", "Save 20% today", "Why? 7 reasons", "a"]


@pytest.fixture(scope="module")
def embedder():
    return default_embedder()


def test_layer_means_are_seven_unit_blocks_ending_in_the_sentence_embedding(embedder) -> None:
    F = embedder.encode_layers(TEXTS)
    assert F.shape == (len(TEXTS), LAYER_MEANS_DIM) and F.dtype == np.float32
    blocks = F.reshape(len(TEXTS), N_LAYER_BLOCKS, EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(blocks, axis=-1), 1.0, atol=1e-5)
    assert np.allclose(F[:, SENTENCE_BLOCK], embedder.encode(TEXTS), atol=1e-5)
    # lower layers are not copies of the last one: they carry what the ranker adds
    assert np.all(np.abs(np.sum(blocks[:, 0] * blocks[:, -1], axis=-1)) < 0.99)


def test_layer_means_do_not_depend_on_the_batch(embedder) -> None:
    """Padding in a batch must not leak into a text's means (the attention mask is applied)."""
    alone = np.stack([embedder._layer_means([t], False)[0] for t in TEXTS])
    together = embedder._layer_means(TEXTS, False)
    assert np.allclose(alone, together, atol=1e-5)


def test_cached_texts_skip_the_model_and_duplicates_embed_once(embedder, monkeypatch) -> None:
    embedder.encode_layers(["cached once"])
    calls: list[list[str]] = []
    real = embedder._layer_means

    def counting(texts, show_progress):
        calls.append(list(texts))
        return real(texts, show_progress)

    monkeypatch.setattr(embedder, "_layer_means", counting)
    out = embedder.encode_layers(["cached once", "new text", "new text"])
    assert calls == [["new text"]]
    assert np.array_equal(out[1], out[2])
    # the same pass filled the sentence-embedding cache: perception's hot-path lookup finds it
    assert np.array_equal(embedder.cached("new text"), out[1][SENTENCE_BLOCK])


def test_doctests() -> None:
    import doctest

    import engine.embeddings

    result = doctest.testmod(engine.embeddings)
    assert result.attempted > 0 and result.failed == 0
