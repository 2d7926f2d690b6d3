"""State fusion: concatenate the encoders' vectors into the state the actor and critic read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from engine.perception.encoders import Encoder
from engine.types import DecisionContext

if TYPE_CHECKING:
    from engine.memory.model import MemoryView


class StateBuilder:
    """``s = [enc_1(ctx), ..., enc_n(ctx)]``; pluggable: pass another :class:`Encoder` to add a modality."""

    def __init__(self, encoders: Sequence[Encoder]) -> None:
        names = [e.name for e in encoders]
        if len(set(names)) != len(names):
            raise ValueError(f"encoder names must be unique, got {names}")
        self.encoders = list(encoders)
        self.dim = sum(e.dim for e in encoders)
        self.slices: dict[str, slice] = {}
        off = 0
        for e in encoders:
            self.slices[e.name] = slice(off, off + e.dim)
            off += e.dim

    def encode(self, ctx: DecisionContext, memory: MemoryView | None = None) -> np.ndarray:
        out = np.empty(self.dim, dtype=np.float32)
        for e in self.encoders:
            out[self.slices[e.name]] = e.encode(ctx, memory)
        return out

    def encode_batch(
        self, ctxs: Sequence[DecisionContext], memories: Sequence[MemoryView | None] | None = None
    ) -> np.ndarray:
        """States (B, d) of several contexts: an encoder with ``encode_many`` (e.g. the memory summary)
        encodes all rows in one numpy pass, the others row by row."""
        mems = memories if memories is not None else [None] * len(ctxs)
        if len(ctxs) == 1:  # fewer numpy calls than the batched encoders
            return self.encode(ctxs[0], mems[0])[None, :]
        out = np.empty((len(ctxs), self.dim), dtype=np.float32)
        for e in self.encoders:
            sl = self.slices[e.name]
            many = getattr(e, "encode_many", None)
            if many is not None:
                out[:, sl] = many(ctxs, mems)
            else:
                for i, (c, m) in enumerate(zip(ctxs, mems, strict=True)):
                    out[i, sl] = e.encode(c, m)
        return out
