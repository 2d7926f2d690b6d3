"""Perception: feature validation, encoders, pluggable fusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.memory.model import MemoryView, make_records
from engine.perception import (
    ContextTextEncoder,
    FeatureSchema,
    MemorySummaryEncoder,
    PortraitEncoder,
    StateBuilder,
    VariantEncoder,
    validate_features,
)
from engine.types import DecisionContext

SCHEMA = FeatureSchema(
    numeric={"age": (40.0, 10.0)}, categorical={"channel": ("web", "app")}, hashed=("city",), hash_dim=8
)


@pytest.mark.parametrize(
    ("attributes", "features", "text", "field"),
    [
        ({"shoe_size": 3}, {}, None, "attributes.shoe_size"),
        ({}, {"age": math.nan}, None, "features.age"),
        ({}, {"age": math.inf}, None, "features.age"),
        ({"age": "old"}, {}, None, "attributes.age"),
        ({"age": True}, {}, None, "attributes.age"),
        ({"channel": 1.5}, {}, None, "attributes.channel"),
        ({}, {}, "x" * 5000, "context_text"),
        ({"city": "x" * 300}, {}, None, "attributes.city"),
    ],
)
def test_validate_features_names_the_field(attributes, features, text, field) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        validate_features(SCHEMA, attributes, features, text)


def test_validate_accepts_good_input() -> None:
    validate_features(SCHEMA, {"channel": "web", "city": "Paris"}, {"age": 31.0}, "summer sale")


def test_portrait_encoder_layout_and_hashing() -> None:
    enc = PortraitEncoder(SCHEMA)
    assert enc.dim == 1 + 2 + 8
    x = enc.encode_values({"age": 60, "channel": "app", "city": "Paris"})
    assert x[0] == pytest.approx(2.0)
    assert x[1:3].tolist() == [0.0, 1.0]
    assert np.abs(x[3:]).sum() == 1.0  # one signed bucket
    y = enc.encode_values({"age": 60, "channel": "app", "city": "Paris"})
    assert np.array_equal(x, y)  # hashing is stable
    assert enc.encode_values({"channel": "tv"})[1:3].tolist() == [0.0, 0.0]  # unknown level -> zeros
    assert enc.encode_values({"age": 1e9})[0] == 5.0  # clipped


class _Embedder:
    """A deterministic real embedder stand-in with the Embedder interface (hash-seeded unit vectors)."""

    dim = 384

    def __init__(self) -> None:
        self.cache: dict[str, np.ndarray] = {}
        self.calls = 0

    def encode(self, texts, *, show_progress=False):
        self.calls += 1
        out = []
        for t in texts:
            v = np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(384).astype(np.float32)
            v /= np.linalg.norm(v)
            self.cache[t] = v
            out.append(v)
        return np.stack(out)

    def cached(self, text):
        return self.cache.get(text)


def test_context_encoder_never_calls_model_on_hot_path() -> None:
    emb = _Embedder()
    enc = ContextTextEncoder(emb, proj_dim=4)
    x = enc.encode_text("spring sale")
    assert x.tolist() == [0.0] * 5 and emb.calls == 0
    assert enc.pending_texts() == ["spring sale"]
    assert enc.embed_pending() == 1 and emb.calls == 1
    x = enc.encode_text("spring sale")
    assert x[-1] == 1.0 and np.abs(x[:4]).sum() > 0
    assert enc.pending_texts() == []


def test_context_rows_are_cached_read_only_and_bounded() -> None:
    emb = _Embedder()
    enc = ContextTextEncoder(emb, proj_dim=4, max_rows=2)
    for t in ("a", "b", "c"):
        enc.encode_text(t)
    enc.embed_pending()
    a = enc.encode_text("a")
    assert enc.encode_text("a") is a  # the second request for a text reuses its row
    np.testing.assert_array_equal(a[:4], emb.cached("a") @ enc._proj)
    with pytest.raises(ValueError):  # shared, so nobody may write into it
        a[0] = 1.0
    enc.encode_text("b")
    enc.encode_text("c")
    assert list(enc._rows) == ["b", "c"]  # at most max_rows, the oldest dropped
    np.testing.assert_array_equal(enc.encode_text("a"), a)  # recomputed, the same row


def test_state_builder_is_pluggable() -> None:
    class ImageEncoder:
        name = "image"
        dim = 2

        def encode(self, ctx, memory):
            return np.array([1.0, float(len(ctx.user_id))], dtype=np.float32)

    b = StateBuilder([PortraitEncoder(SCHEMA), MemorySummaryEncoder(), ImageEncoder()])
    ctx = DecisionContext("e", "abc", ("a",), {"channel": "web"}, None, {"age": 40.0})
    mem = MemoryView(make_records(np.eye(3)[:2], np.array([1.0, 0.0]), np.array([0.0, 1.0])))
    s = b.encode(ctx, mem)
    assert s.shape == (11 + 3 + 2,)
    assert s[b.slices["image"]].tolist() == [1.0, 3.0]
    assert s[b.slices["memory"]][1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unique"):
        StateBuilder([MemorySummaryEncoder(), MemorySummaryEncoder()])


def test_batch_encoding_equals_row_by_row() -> None:
    """``encode_batch`` (the decide rounds' path: the memory summary in one pass) must give each row the
    state ``encode`` gives it, for memories of any length, none, and more than the weights cached."""

    class ImageEncoder:  # an encoder without encode_many: encoded row by row
        name = "image"
        dim = 1

        def encode(self, ctx, memory):
            return np.array([float(len(ctx.user_id))], dtype=np.float32)

    b = StateBuilder([PortraitEncoder(SCHEMA), MemorySummaryEncoder(), ImageEncoder()])
    rng = np.random.default_rng(7)
    lengths = [0, 1, 5, 32, 100, 0, 3]
    mems = [
        MemoryView(make_records(rng.random((n, 3)), rng.random(n), np.arange(n, dtype=float))) if n else None
        for n in lengths
    ]
    ctxs = [
        DecisionContext("e", "u" * (i + 1), ("a",), {"channel": "web"}, None, {"age": 30.0 + i})
        for i in range(len(lengths))
    ]
    batched = b.encode_batch(ctxs, mems)
    np.testing.assert_allclose(
        batched, np.stack([b.encode(c, m) for c, m in zip(ctxs, mems, strict=True)]), rtol=1e-6
    )
    assert b.encode_batch(ctxs[:1], mems[:1]).tolist() == [b.encode(ctxs[0], mems[0]).tolist()]


def test_variant_encoder_embeds_on_registration_only() -> None:
    emb = _Embedder()
    enc = VariantEncoder(emb, proj_dim=8)
    enc.add("a", text="Free shipping")
    assert emb.calls == 1
    m = enc.matrix(["a"])
    assert m.shape == (1, 8) and np.linalg.norm(m[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="'b' has no embedding"):
        enc.matrix(["b"])
    with pytest.raises(ValueError, match="384 finite"):
        enc.add("c", embedding=np.full(384, np.nan))


@pytest.mark.slow
def test_real_minilm_context_embedding() -> None:
    from engine.embeddings import default_embedder

    enc = ContextTextEncoder(default_embedder(), proj_dim=8)
    enc.encode_text("running shoes for beginners")
    enc.embed_pending()
    a = enc.encode_text("running shoes for beginners")
    enc.encode_text("beginner running sneakers")
    enc.encode_text("mortgage interest rates")
    enc.embed_pending()
    b, c = enc.encode_text("beginner running sneakers"), enc.encode_text("mortgage interest rates")
    assert a[-1] == b[-1] == c[-1] == 1.0
    assert np.dot(a[:8], b[:8]) > np.dot(a[:8], c[:8])


def test_draw_picks_the_index_numpys_inverse_cdf_picks() -> None:
    # _draw is pure Python for speed; it must choose exactly what searchsorted(cumsum(p), u) chooses
    from types import SimpleNamespace

    from engine.perception.policy import PerceivingAllocator

    rng = np.random.default_rng(7)
    for k in (1, 2, 10, 37):
        for _ in range(2000):
            p = rng.random(k) ** 4
            p /= p.sum()
            seed = int(rng.integers(2**32))
            fake = SimpleNamespace(rng=np.random.default_rng(seed))
            u = np.random.default_rng(seed).random()
            expected = min(int(np.searchsorted(np.cumsum(p), u, side="right")), k - 1)
            assert PerceivingAllocator._draw(fake, p) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "lengths", [[32, 32, 32], [5], [32, 7, 0], [3, 3, None], [1, 1], [None, None], [3, 100, 65]]
)
def test_memory_summaries_of_a_round_equal_one_at_a_time(lengths: list[int | None]) -> None:
    """A round's summaries (one zero-padded matrix, full, ragged, missing and longer-than-the-weights
    memories alike) equal what :meth:`encode` gives each user alone."""
    rng = np.random.default_rng(len(lengths))
    enc = MemorySummaryEncoder()
    mems = [None if n is None else MemoryView(rng.random((n, 10), dtype=np.float32)) for n in lengths]
    many = enc.encode_many([None] * len(mems), mems)
    alone = np.stack([enc.encode(None, m) for m in mems])
    np.testing.assert_allclose(many, alone, rtol=1e-6, atol=1e-7)
