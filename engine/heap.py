"""Keep the cyclic garbage collector off the serving path.

A worker holds a large, long-lived heap (faust, torch, the MiniLM encoder, the ranker): ~440,000 tracked
objects, and one full collection of them takes 200-350 ms here (``bench/bench_memory_reads.py``) — a
pause every decide in flight waits for, the p99 spike seen under load. After each big load we collect
once and move the survivors to the permanent generation (:func:`gc.freeze`), so later collections scan
only objects created since. Objects created before a freeze and dropped later are still freed by
reference counting; only reference cycles among them would stay.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def settle_heap(reason: str) -> None:
    """Collect once, then freeze what survives (call after loading models or at start-up, not per request)."""
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "heap settled after %s: %d objects frozen in %.0f ms",
        reason,
        gc.get_freeze_count(),
        (time.perf_counter() - t0) * 1000,
    )
