"""Pair-sampling rules, one module per family; all share :class:`~.base.BatchState`."""

from engine.llmpo.sampling.base import BatchState, PairRule
from engine.llmpo.sampling.baselines import RandomPair, RoundRobin
from engine.llmpo.sampling.dueling_thompson import DuelingThompson
from engine.llmpo.sampling.rucb import RUCB
from engine.llmpo.sampling.tracking import LLMPOSampling, LLMPOTopTwo, LLMPOTracking

__all__ = [
    "RUCB",
    "BatchState",
    "DuelingThompson",
    "LLMPOSampling",
    "LLMPOTopTwo",
    "LLMPOTracking",
    "PairRule",
    "RandomPair",
    "RoundRobin",
]
