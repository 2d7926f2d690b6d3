"""Per-variant sufficient statistics of the reward stream, shared by the count-based allocators."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.types import Reward


@dataclass
class ArmCounts:
    """Trials (impressions), successes (clicks) and conversion value per variant.

    A click implies an impression (the ledger emits one if the client did not),
    so ``successes <= trials`` always holds.
    """

    variant_ids: list[str]
    trials: dict[str, int] = field(default_factory=dict)
    successes: dict[str, int] = field(default_factory=dict)
    conversions: dict[str, int] = field(default_factory=dict)
    value: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for v in self.variant_ids:
            self.add_arm(v)

    def add_arm(self, variant_id: str) -> None:
        if variant_id not in self.variant_ids:
            self.variant_ids.append(variant_id)
        for table in (self.trials, self.successes, self.conversions):
            table.setdefault(variant_id, 0)
        self.value.setdefault(variant_id, 0.0)

    def add(self, rewards: Iterable[Reward]) -> int:
        """Count ``rewards``; returns how many were about known variants."""
        used = 0
        for r in rewards:
            v = r.variant_id
            if v not in self.trials:
                continue
            used += 1
            if r.kind == "impression":
                self.trials[v] += 1
            elif r.kind == "click":
                self.successes[v] += 1
            else:
                self.conversions[v] += 1
                self.value[v] += r.value
        return used

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            v: {
                "trials": float(self.trials[v]),
                "clicks": float(self.successes[v]),
                "conversions": float(self.conversions[v]),
                "conversion_value": self.value[v],
                "click_rate": self.successes[v] / self.trials[v] if self.trials[v] else 0.0,
            }
            for v in self.variant_ids
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant_ids": list(self.variant_ids),
            "trials": self.trials,
            "successes": self.successes,
            "conversions": self.conversions,
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArmCounts:
        obj = cls(list(d["variant_ids"]))
        for name in ("trials", "successes", "conversions"):
            getattr(obj, name).update({k: int(x) for k, x in d[name].items()})
        obj.value.update({k: float(x) for k, x in d["value"].items()})
        return obj

    def totals(self, variant_ids: Sequence[str]) -> tuple[list[int], list[int]]:
        return [self.trials[v] for v in variant_ids], [self.successes[v] for v in variant_ids]
