"""Redis key names in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key layout under a prefix (default ``abe``)."""

    prefix: str = "abe"

    # registry (global)
    @property
    def experiments(self) -> str:
        return f"{self.prefix}:experiments"

    @property
    def experiments_rev(self) -> str:
        return f"{self.prefix}:experiments:rev"

    @property
    def policy_versions(self) -> str:
        return f"{self.prefix}:policy_versions"

    @property
    def pending_index(self) -> str:
        """Set of experiments that hold events waiting for their decision."""
        return f"{self.prefix}:pending_index"

    # per experiment (one cluster slot each)
    def decision(self, experiment_id: str, decision_id: str) -> str:
        return f"{self.prefix}:{{{experiment_id}}}:d:{decision_id}"

    def ledger(self, experiment_id: str) -> str:
        return f"{self.prefix}:{{{experiment_id}}}:ledger"

    def rewards(self, experiment_id: str) -> str:
        return f"{self.prefix}:{{{experiment_id}}}:rewards"

    def pending(self, experiment_id: str) -> str:
        return f"{self.prefix}:{{{experiment_id}}}:pending"

    def pending_payloads(self, experiment_id: str) -> str:
        return f"{self.prefix}:{{{experiment_id}}}:pending_raw"

    def policy(self, experiment_id: str) -> str:
        return f"{self.prefix}:{{{experiment_id}}}:policy"

    def memory(self, experiment_id: str, record_format: int) -> str:
        """Prefix of the experiment's per-user memories (``<this>:<user>``). ``record_format`` is the
        record layout's number (:data:`engine.memory.model.RECORD_FORMAT`): memories of another layout
        live under another prefix, never read, and expire after their TTL."""
        return f"{self.prefix}:{{{experiment_id}}}:mem{record_format}"
