"""Allocators by name: the value of ``allocator`` on an experiment.

Classes load lazily so a worker serving only Thompson experiments never imports
torch. ``make_allocator`` passes each constructor only the options it declares:
engine-provided context (``variant_texts``, ``split``, ``conversion_weight``,
``attribution_window_s``)
when the allocator wants it, and the experiment's ``allocator_config``, whose
unknown keys are an error that names them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from engine.types import Allocator

ALLOCATORS: dict[str, str] = {
    "fixed_split": "engine.allocators.fixed_split:FixedSplitAllocator",
    "thompson": "engine.allocators.thompson:ThompsonAllocator",
    "llm_po": "engine.allocators.llm_po:LLMPOAllocator",
    "classical_ab": "engine.allocators.classical_ab:ClassicalABAllocator",
    "linucb": "engine.allocators.linucb:LinUCBAllocator",
    "lin_ts": "engine.allocators.lin_ts:LinTSAllocator",
    "reinforce": "engine.allocators.reinforce:ReinforceAllocator",
    "actor_critic": "engine.allocators.actor_critic:ActorCriticAllocator",
}

#: Options the engine offers every allocator; each takes those its constructor names.
ENGINE_OPTIONS = frozenset(
    {"variant_texts", "split", "conversion_weight", "attribution_window_s", "prior_pseudo_counts"}
)


def available() -> list[str]:
    """Names of the allocators this build can run."""
    return sorted(ALLOCATORS)


def allocator_class(name: str) -> type[Allocator]:
    """The class implementing allocator ``name`` (ValueError naming the choices if unknown)."""
    target = ALLOCATORS.get(name)
    if target is None:
        raise ValueError(f"allocator: unknown allocator {name!r}; available: {', '.join(available())}")
    module, attr = target.split(":")
    cls: type[Allocator] = getattr(importlib.import_module(module), attr)
    return cls


def make_allocator(
    name: str,
    variant_ids: Sequence[str],
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    engine_options: Mapping[str, Any] | None = None,
) -> Allocator:
    """Build allocator ``name`` over ``variant_ids``.

    ``config`` is the user's ``allocator_config`` (unknown keys raise ValueError);
    ``engine_options`` are offered and silently skipped when not wanted.
    """
    cls = allocator_class(name)
    params = inspect.signature(cls.__init__).parameters
    accepted = {p for p, spec in params.items() if spec.kind is inspect.Parameter.KEYWORD_ONLY}
    config = dict(config or {})
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise ValueError(
            f"allocator_config: unknown option(s) {', '.join(unknown)} for {name}; "
            f"accepted: {', '.join(sorted(accepted - ENGINE_OPTIONS - {'seed'})) or 'none'}"
        )
    kwargs = {k: v for k, v in (engine_options or {}).items() if k in accepted}
    kwargs.update(config)
    if isinstance(kwargs.get("schema"), Mapping):  # the perception schema arrives as JSON
        from engine.perception.schema import FeatureSchema

        kwargs["schema"] = FeatureSchema.from_dict(kwargs["schema"])
    try:
        return cls(list(variant_ids), seed=seed, **kwargs)
    except TypeError as exc:  # a wrong type for a declared option
        raise ValueError(f"allocator_config: {exc}") from exc


def restore_allocator(snapshot: Mapping[str, Any], seed: int | None = None) -> Allocator:
    """Rebuild any allocator from its snapshot (the snapshot names its class)."""
    return allocator_class(str(snapshot["allocator"])).restore(snapshot, seed=seed)
