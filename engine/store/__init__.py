"""Redis at the edge: experiment registry, reward ledger, policy snapshots.

All keys of one experiment share the hash tag ``{<experiment id>}`` so each
Lua script touches one Redis Cluster slot.
"""

from engine.store.keys import Keys
from engine.store.ledger import EventOutcome, RewardLedger
from engine.store.policies import PolicyStore
from engine.store.registry import ExperimentStore

__all__ = ["EventOutcome", "ExperimentStore", "Keys", "PolicyStore", "RewardLedger"]
