"""Keep event consumption from running ahead of decision consumption, per partition.

Decisions and their events travel on different, co-partitioned topics. When a worker drains a
backlog it fetches ``decisions-p`` and ``impressions-p`` side by side, and whichever fetch comes
back first wins: measured here, about half of a backlog's events arrived before their decision.
Such an event is not lost (it waits in the ledger's pending set and a background loop re-joins
it), but it is validated and joined twice and its payload is stored and read back once, which
took 15-28% of a draining worker's time (docs/PERFORMANCE.md).

This is the synchronisation Kafka Streams applies to co-partitioned joins: release an event only
once the decision partition of the same number has been consumed past the event's timestamp (a
decision of the same millisecond may still be unread), or
is caught up (nothing more to read), or the event has been held ``max_hold_s``. Held events are
neither applied nor committed, so a crash or a rebalance replays them; the caller pauses the
partitions that hold events so memory stays bounded by one fetch per partition.

Pure logic, no I/O: the batch consumer (consumers/batch.py) feeds it fetched records and the
decision partitions' progress.

>>> from consumers.ingest import Record
>>> a = EventAligner(max_hold_s=1.0)
>>> a.decided(0, 1_000)  # decisions-0 consumed up to timestamp 1,000 ms
>>> early = Record("impressions", 0, 7, None, b"{}", timestamp=1_500)
>>> a.admit([early], caught_up=lambda p: False, now=10.0)
[]
>>> a.holding()
{('impressions', 0)}
>>> a.decided(0, 1_501)
>>> [r.offset for r in a.admit([], caught_up=lambda p: False, now=10.1)]
[7]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from consumers.ingest import Record

#: (logical topic, partition) of an event record
Slot = tuple[str, int]


class EventAligner:
    """Holds each event partition's records whose decisions have not been consumed yet."""

    def __init__(self, max_hold_s: float) -> None:
        if max_hold_s < 0:
            raise ValueError(f"max_hold_s must be >= 0, got {max_hold_s}")
        self.max_hold_s = max_hold_s
        self._decided: dict[int, int] = {}  # partition -> newest decision timestamp consumed (ms)
        self._held: dict[Slot, list[tuple[float, Record]]] = {}  # (fetched at, record), offset order

    def decided(self, partition: int, timestamp_ms: int) -> None:
        """Decisions of ``partition`` were consumed up to ``timestamp_ms``."""
        if timestamp_ms > self._decided.get(partition, -1):
            self._decided[partition] = timestamp_ms

    def admit(self, events: Iterable[Record], caught_up: Callable[[int], bool], now: float) -> list[Record]:
        """The events to apply now, in offset order per partition; the rest are held.

        ``events`` are newly fetched records (in fetch order per partition); held ones from earlier
        calls are reconsidered first. ``caught_up(p)`` says the decision partition ``p`` has nothing
        more to read. A partition's release is always a prefix of what it holds, so committing the
        offset after the last released record never skips a held one.
        """
        for rec in events:
            self._held.setdefault((rec.topic, rec.partition), []).append((now, rec))
        ready: list[Record] = []
        for slot, held in list(self._held.items()):
            partition = slot[1]
            if caught_up(partition):
                n = len(held)
            else:
                until = self._decided.get(partition, -1)
                n = 0
                for fetched_at, rec in held:  # a prefix: decided past it, or waited long enough
                    if rec.timestamp >= 0 and rec.timestamp >= until and now - fetched_at < self.max_hold_s:
                        break
                    n += 1
            ready.extend(rec for _, rec in held[:n])
            del held[:n]
            if not held:
                del self._held[slot]
        return ready

    def holding(self) -> set[Slot]:
        """Event partitions that hold records (the consumer pauses their fetches)."""
        return set(self._held)

    def forget(self, partitions: Sequence[int]) -> None:
        """Drop what is held for revoked partitions: their next owner replays it from the commit."""
        gone = set(partitions)
        for slot in [s for s in self._held if s[1] in gone]:
            del self._held[slot]
        for p in gone:
            self._decided.pop(p, None)
