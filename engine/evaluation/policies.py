"""The policies compared offline, by the names used in the ``eval policies`` JSON.

Hyperparameters are the allocators' defaults (chosen a priori / on the simulator, never on the Hillstrom
streams that are reported); ``classical_ab`` explores for a power-analysis sample size (see its module).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from engine.evaluation.baselines import ThompsonPolicy, UniformPolicy
from engine.perception.schema import FeatureSchema

POLICY_NAMES = (
    "classical_ab",
    "uniform",
    "thompson",
    "linucb",
    "lin_ts",
    "reinforce",
    "actor_critic",
    "actor_critic_no_memory",
)


def make_policy(
    name: str,
    arms: Sequence[str],
    seed: int,
    schema: FeatureSchema,
    embeddings: Mapping[str, np.ndarray],
    bernoulli: bool = True,
    conversion_weight: float = 0.0,
    actor_critic_options: Mapping[str, object] | None = None,
) -> object:
    """Build one policy for offline evaluation (batched ``act_batch`` / ``learn_batch`` interface)."""
    from engine.allocators.actor_critic import ActorCriticAllocator, ActorCriticConfig
    from engine.allocators.classical_ab import ClassicalABAllocator
    from engine.allocators.lin_ts import LinTSAllocator
    from engine.allocators.linucb import LinUCBAllocator
    from engine.allocators.reinforce import ReinforceAllocator

    kw = {"seed": seed, "schema": schema, "conversion_weight": conversion_weight}
    builders: dict[str, Callable[[], object]] = {
        "classical_ab": lambda: ClassicalABAllocator(arms, **kw),
        "uniform": lambda: UniformPolicy(len(arms), seed),
        "thompson": lambda: ThompsonPolicy(len(arms), seed, bernoulli=bernoulli),
        "linucb": lambda: LinUCBAllocator(arms, **kw),
        "lin_ts": lambda: LinTSAllocator(arms, **kw),
        "reinforce": lambda: ReinforceAllocator(arms, **kw),
        "actor_critic": lambda: ActorCriticAllocator(
            arms,
            seed=seed,
            schema=schema,
            variant_embeddings=embeddings,
            config=ActorCriticConfig(conversion_weight=conversion_weight, **dict(actor_critic_options or {})),
        ),
        "actor_critic_no_memory": lambda: ActorCriticAllocator(
            arms,
            seed=seed,
            schema=schema,
            variant_embeddings=embeddings,
            config=ActorCriticConfig(
                conversion_weight=conversion_weight, use_memory=False, **dict(actor_critic_options or {})
            ),
        ),
    }
    if name not in builders:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    return builders[name]()
