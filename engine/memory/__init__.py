"""Memory-augmented reward estimation: per-user (and per-experiment) memories of rewarded interactions.

:mod:`engine.memory.model` is pure (numpy/torch, no I/O): the memory record layout, an in-process bounded
:class:`~engine.memory.model.MemoryBank`, and the attention read that turns a memory into reward estimates
for candidate variants. :mod:`engine.memory.store` is the Redis edge (pipelined, TTL, bounded, degraded mode).
"""

from engine.memory.model import MemoryBank, MemoryView, attention_read

__all__ = ["MemoryBank", "MemoryView", "attention_read"]
