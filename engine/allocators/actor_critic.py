"""Actor-critic allocator: a softmax actor over (state, variant) pairs, a critic of long-term value, memory.

Scores are computed for each (state ``s``, variant) pair from the variant's projected text embedding ``e_v``,
a per-variant slot and the memory reads ``m_v`` (so any number of variants, and brand-new ones, are scored):

    f(s, v) = b_v + u_v . s + s^T W e_v + c . e_v + w_m . m_v          (one set of weights per head)
    Q(s, v) = f_critic(s, v)                      the critic: expected discounted return of showing v
    pi(v|s) = (1 - K eps) softmax_v f_actor(s, v) + eps      the actor, with minimum exploration ``eps``

``m_v`` are attention reads of the user's memory (:mod:`engine.memory.model`, Redis at the edge). The
experiment's recent interactions form a second, fast memory of the critic's *errors*: the residual
``delta_i = r_i - Q(s_i, a_i)`` of each learned decision, read for ``(s, v)`` by attention over records of
variant ``v`` from similar cohorts (cosine of the declared-category block of the portrait) with a recency
half-life in records (:mod:`engine.memory.residual`):

    c(s, v) = shrink( sum_i w_i delta_i / (sum_i w_i + w_0) )      shrink(x) = sign(x) max(|x| - z se, 0)

It is zero while the critic is right (residuals average to 0, within ``z`` standard errors) and follows a
preference change within a few dozen decisions of the affected cohort, long before the slow critic has
re-learned it. Both heads add it: ``Q_eff = Q + c`` and the actor's logits ``f_actor + c / tau`` (the
actor's target ``softmax((Q_eff + bonus) / tau)`` then leaves ``f_actor`` tracking the slow part only).

Learning (online mini-batches of joined rewards, :meth:`ActorCriticAllocator.learn_batch`):

* critic (the slow part: raw rewards, never the correction; a small step size keeps it precise):
  ``min sum_i rho_i (Q(s_i, a_i) - y_i)^2`` with ``y_i = r_i + gamma V(s'_i)``, ``s'_i`` the same
  user's next decision state and ``V(s) = sum_v pi(v|s) Q(s, v)``; ``gamma = 0`` is a contextual bandit;
* actor: fitted to the critic's Boltzmann policy by cross-entropy (a KL projection, the policy-improvement
  step of MPO-style actor-critics), ``min sum_i rho_i KL(softmax(Q+(s_i, .) / tau) || p(.|s_i))``, whose
  optimum is that of the entropy-regularised expected policy gradient ``max sum_v p Q+ / tau + H(p)``;
  unlike the latter's, its gradient ``p - p*`` does not vanish where ``p(v)`` is small, so a converged,
  near-deterministic actor still moves when a preference changes. ``Q+ = Q_eff`` plus a count bonus
  ``kappa / sqrt(n_v + 1)`` (discounted counts) so new variants get tried;
* off-policy correction: ``rho_i = min(c, pi(a_i|s_i) / mu_i)`` with the logged propensity ``mu_i`` (serving
  uses a snapshot that lags the learner);
* reward ``r = click + w * conversion_value``; conversions still in flight are credited provisionally with the
  estimated conversion value per click and corrected when they land or the window closes.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from engine.memory.model import (
    MemoryBank,
    MemoryView,
    attention_read,
    attention_read_batch,
    attention_read_torch,
    make_records,
    pad_memories,
    record_time,
)
from engine.memory.provisional import PendingDecision
from engine.memory.residual import ResidualMemory
from engine.perception.encoders import Encoder, MemorySummaryEncoder, TextEmbedder, VariantEncoder
from engine.perception.policy import PerceivingAllocator
from engine.perception.schema import FeatureSchema
from engine.types import Choice, DecisionContext


class ActorCriticConfig(BaseModel):
    """Per-experiment settings of the actor-critic (explicit defaults, chosen on the simulator)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gamma: float = Field(0.0, ge=0.0, lt=1.0, description="discount over a user's successive decisions")
    conversion_weight: float = Field(1.0, ge=0.0, description="w in r = click + w * conversion_value")
    min_prob: float = Field(0.005, ge=0.0, le=0.5, description="minimum probability of every variant")
    temperature: float = Field(0.01, gt=0.0, description="tau: the actor tends to softmax(Q+ / tau)")
    bonus: float = Field(0.02, ge=0.0, description="kappa of the count bonus kappa / sqrt(n_v + 1)")
    count_decay: float = Field(0.9995, gt=0.0, le=1.0, description="per-decision decay of the counts n_v")
    lr_critic: float = Field(
        0.0015, gt=0.0, description="slow and precise: the residual memory follows fast changes"
    )
    lr_actor: float = Field(0.06, gt=0.0)
    clip_rho: float = Field(2.0, ge=1.0, description="c: importance weights are clipped to [0, c]")
    minibatch: int = Field(
        128, ge=1, description="most transitions per gradient step (one step per joined batch up to this)"
    )
    proj_dim: int = Field(8, ge=2, description="dimension of projected variant/context embeddings")
    use_memory: bool = True
    user_memory_len: int = Field(32, ge=1, description="N: records kept per user")
    residual_memory_len: int = Field(
        1024, ge=1, description="records of the experiment's recent residuals (the fast memory)"
    )
    residual_halflife: float = Field(256.0, gt=0.0, description="recency half-life of residuals, in records")
    residual_sharpness: float = Field(3.0, ge=0.0, description="beta of the cohort-similarity kernel")
    residual_prior: float = Field(2.0, gt=0.0, description="w_0: pseudo-records of zero residual")
    residual_z: float = Field(2.0, ge=0.0, description="z: residuals within z standard errors count as 0")
    use_residual_memory: bool = Field(True, description="add the fast residual correction (needs use_memory)")
    attribution_window: float = Field(86400.0, gt=0.0, description="seconds a decision waits for events")
    td_horizon: float = Field(
        7 * 86400.0, gt=0.0, description="a user's next decision later than this ends the episode"
    )
    max_variants: int = Field(64, ge=1)
    max_users: int = Field(100_000, ge=1, description="users kept in the learner's in-process memory")
    reward_ewma: float = Field(0.001, gt=0.0, le=1.0, description="rate of the running mean reward r_0")


_HEADS = ("critic", "actor")


class _Net(torch.nn.Module):
    def __init__(self, d: int, k: int, n_slots: int, m: int) -> None:
        super().__init__()
        p = torch.nn.ParameterDict()
        for h in _HEADS:
            p[f"{h}_b"] = torch.nn.Parameter(torch.zeros(n_slots))
            p[f"{h}_U"] = torch.nn.Parameter(torch.zeros(n_slots, d))
            p[f"{h}_W"] = torch.nn.Parameter(torch.zeros(d, k))
            p[f"{h}_c"] = torch.nn.Parameter(torch.zeros(k))
            p[f"{h}_wm"] = torch.nn.Parameter(torch.zeros(m))
        # attention sharpness and time decay of the user-memory read (softplus-parametrised)
        p["mem_beta"] = torch.nn.Parameter(torch.tensor([2.0]))
        p["mem_lam"] = torch.nn.Parameter(torch.tensor([-6.0]))
        self.p = p

    def head(
        self, h: str, S: torch.Tensor, E: torch.Tensor, slots: torch.Tensor, M: torch.Tensor
    ) -> torch.Tensor:
        p = self.p
        out = p[f"{h}_b"][slots][None, :] + S @ p[f"{h}_U"][slots].T + (S @ p[f"{h}_W"]) @ E.T
        out = out + (E @ p[f"{h}_c"])[None, :]
        if M.shape[-1]:
            out = out + M @ p[f"{h}_wm"]
        return out


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


class ActorCriticAllocator(PerceivingAllocator):
    """The engine's optimizing allocator (``allocator: actor_critic``); see the module doc for the maths.

    ``variant_texts`` are embedded once here and in :meth:`add_variant` (or pass ``variant_embeddings``);
    ``config`` is an :class:`ActorCriticConfig` or its dict (from an experiment's ``allocator_config``),
    ``schema`` a :class:`~engine.perception.schema.FeatureSchema` or its dict; ``conversion_weight``
    overrides the config's.
    """

    name: ClassVar[str] = "actor_critic"
    uses_provisional: ClassVar[bool] = True

    def __init__(
        self,
        variant_ids: Sequence[str],
        *,
        seed: int | None = None,
        config: ActorCriticConfig | Mapping[str, Any] | None = None,
        schema: FeatureSchema | Mapping[str, Any] | None = None,
        variant_texts: Mapping[str, str] | None = None,
        variant_embeddings: Mapping[str, np.ndarray] | None = None,
        embedder: TextEmbedder | None = None,
        conversion_weight: float | None = None,
        attribution_window_s: float | None = None,
        extra_encoders: Sequence[Encoder] = (),
    ) -> None:
        if isinstance(config, Mapping):
            config = ActorCriticConfig(**config)
        cfg = config or ActorCriticConfig()
        if conversion_weight is not None:
            cfg = cfg.model_copy(update={"conversion_weight": float(conversion_weight)})
        if attribution_window_s is not None:  # the experiment's window (engine option) wins
            cfg = cfg.model_copy(update={"attribution_window": float(attribution_window_s)})
        self.config = cfg
        self.reads_memory = cfg.use_memory
        if isinstance(schema, Mapping):
            schema = FeatureSchema.from_dict(schema)
        if embedder is None and variant_texts and not variant_embeddings:
            from engine.embeddings import default_embedder

            embedder = default_embedder()
        if cfg.min_prob * len(variant_ids) > 1.0:
            raise ValueError(f"min_prob {cfg.min_prob} x {len(variant_ids)} variants exceeds 1")
        super().__init__(
            variant_ids,
            seed=seed,
            schema=schema,
            embedder=embedder,
            conversion_weight=cfg.conversion_weight,
            attribution_window_s=cfg.attribution_window,
            extra_encoders=extra_encoders,
        )
        torch.manual_seed(seed or 0)
        self.variants = VariantEncoder(embedder, proj_dim=cfg.proj_dim, seed=seed or 0)
        texts = dict(variant_texts or {})
        embs = dict(variant_embeddings or {})
        missing_text = [v for v in variant_ids if v not in embs and v not in texts]
        if missing_text:
            raise ValueError(f"variants {missing_text} need a text (variant_texts) or an embedding")
        todo = [v for v in variant_ids if v not in embs]
        if todo:
            if embedder is None:
                raise ValueError("variant_texts given but no embedder to embed them")
            vecs = embedder.encode([texts[v] for v in todo])
            embs.update(dict(zip(todo, vecs, strict=True)))
        for v in variant_ids:
            self.variants.add(v, embedding=embs[v])
        if len(variant_ids) > cfg.max_variants:
            raise ValueError(f"{len(variant_ids)} variants exceed max_variants={cfg.max_variants}")
        self.slots = {v: i for i, v in enumerate(variant_ids)}
        self.m = 2 if cfg.use_memory else 0
        self.net = _Net(self.state_dim, cfg.proj_dim, cfg.max_variants, self.m)
        self._make_optimizer()
        self.counts = np.zeros(cfg.max_variants)
        self.r0 = 0.0
        self.conv_per_click = np.zeros(cfg.max_variants)
        self.rec_width = cfg.proj_dim + 2
        self.bank = MemoryBank(self.rec_width, cfg.user_memory_len, cfg.max_users)
        self.residuals = (
            ResidualMemory(
                self.state_dim,
                cfg.residual_memory_len,
                cfg.residual_halflife,
                cfg.residual_sharpness,
                cfg.residual_prior,
                cfg.residual_z,
                key_dims=self._cohort_dims(),
            )
            if cfg.use_memory and cfg.use_residual_memory
            else None
        )
        self._pending_td: dict[str, tuple[np.ndarray, int, float, float, float]] = {}
        self._memory_writes: dict[str, list[np.ndarray]] = {}
        self.updates = 0
        #: drift metric: each variant's recent mean residual (reward minus the critic's estimate, from the
        #: residual memory); large values mean preferences moved faster than the slow critic follows
        self.drift_score = 0.0
        self.drift_by_variant = np.zeros(len(variant_ids))
        self._export()

    # --- perception -----------------------------------------------------------------------------------
    def _cohort_dims(self) -> np.ndarray:
        """State dims of the declared categories (one-hot and hashed): the fast memory's cohort key."""
        start = self.builder.slices["portrait"].start
        return np.arange(start + len(self.schema.numeric), start + self.portrait.dim)

    def _memory_encoders(self) -> list[Encoder]:
        return [MemorySummaryEncoder()] if self.config.use_memory else []

    def memory_for(self, user_id: str, before: float) -> MemoryView | None:
        if not self.config.use_memory:
            return None
        mem = self.bank.get(user_id)
        return None if mem is None else mem.before(before)

    def _make_optimizer(self) -> None:
        crit = [p for n, p in self.net.p.items() if n.startswith("critic") or n.startswith("mem")]
        act = [p for n, p in self.net.p.items() if n.startswith("actor")]
        self.opt = torch.optim.Adam(  # foreach: one kernel per group, not per tensor (small tensors)
            [{"params": crit, "lr": self.config.lr_critic}, {"params": act, "lr": self.config.lr_actor}],
            foreach=True,
        )

    def _export(self) -> None:
        """Numpy copy of the weights for the hot path (no torch call per request)."""
        with torch.no_grad():
            self._np = {k: v.detach().numpy().astype(np.float64).copy() for k, v in self.net.p.items()}
        self._beta = _softplus(self._np["mem_beta"]) if self.m else np.zeros(1)
        self._lam = _softplus(self._np["mem_lam"]) if self.m else np.zeros(1)
        self._E = self.variants.matrix(self.variant_ids).astype(np.float64)
        self._slot_idx = sl = np.array([self.slots[v] for v in self.variant_ids])
        self._E_t = torch.from_numpy(self.variants.matrix(self.variant_ids))
        self._slots_t = torch.from_numpy(sl)
        # f(s, v) = s . (u_v + W e_v) + (b_v + c . e_v) + w_m . m_v: one (d, K) matrix and a (K,) offset
        p, E = self._np, self._E
        self._lin = {
            h: (p[f"{h}_U"][sl].T + p[f"{h}_W"] @ E.T, p[f"{h}_b"][sl] + E @ p[f"{h}_c"]) for h in _HEADS
        }
        if self.residuals is not None:
            self.residuals.prepare(self._slot_idx)

    def correction(self, S: np.ndarray) -> np.ndarray:
        """The fast memory's correction ``c(s, v)`` (B, K) of the critic (zeros without it)."""
        if self.residuals is None:
            return np.zeros((len(S), len(self.variant_ids)))
        return self.residuals.read(S)

    # --- acting -----------------------------------------------------------------------------------------
    def _memory_features(
        self, users: Sequence[str] | None, now: float, memories: Sequence[MemoryView | None] | None, B: int
    ) -> np.ndarray:
        K = len(self.variant_ids)
        if self.m and memories is not None and B > 1 and np.isfinite(now):  # decisions served together
            lens = [len(m) for m in memories if m is not None]
            if not lens or max(lens) == 0:
                return np.zeros((B, K, self.m))
            recs, mask = pad_memories(memories, self.rec_width, max(lens))
            return attention_read_batch(self._E, recs, mask, now, self._beta[0], self._lam[0], self.r0)
        M = np.zeros((B, K, self.m))
        if not self.m:
            return M
        for b in range(B):
            mem = (
                memories[b]
                if memories is not None
                else (self.bank.get(users[b]) if users is not None else None)
            )
            if mem is not None and len(mem):
                tb = now if np.isfinite(now) else float(mem.times[-1])
                M[b, :, :2] = attention_read(self._E, mem, tb, self._beta[0], self._lam[0], self.r0)
        return M

    def _head_np(self, h: str, S: np.ndarray, M: np.ndarray) -> np.ndarray:
        A, off = self._lin[h]
        out = S @ A + off
        if self.m:
            out = out + M @ self._np[f"{h}_wm"]
        return out

    def _mix(self, logits: np.ndarray) -> np.ndarray:
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        eps = self.config.min_prob
        return (1.0 - eps * p.shape[1]) * p + eps

    def act_batch(
        self,
        states: np.ndarray,
        users: Sequence[str] | None = None,
        now: float = 0.0,
        memories: Sequence[MemoryView | None] | None = None,
    ) -> np.ndarray:
        S = np.asarray(states, dtype=np.float64)
        M = self._memory_features(users, now, memories, S.shape[0])
        logits = self._head_np("actor", S, M)
        if self.residuals is not None:
            logits = logits + self.correction(S) / self.config.temperature
        return self._mix(logits)

    def q_values(
        self, states: np.ndarray, users: Sequence[str] | None = None, now: float = 0.0
    ) -> np.ndarray:
        """The critic's slow estimate Q(s, v) for a batch of states (B, K); add :meth:`correction` for
        the memory-corrected ``Q_eff``."""
        S = np.asarray(states, dtype=np.float64)
        return self._head_np("critic", S, self._memory_features(users, now, None, S.shape[0]))

    def choose(  # type: ignore[override]
        self, ctx: DecisionContext, memory: MemoryView | None = None, now: float | None = None
    ) -> Choice:
        """Serve one decision; ``memory`` is the user's memory from Redis (None: new user or degraded)."""
        got = self.choose_many([ctx], [memory], now)[0]
        if isinstance(got, ValueError):
            raise got
        return got

    def choose_many(  # type: ignore[override]
        self,
        ctxs: Sequence[DecisionContext],
        memories: Sequence[MemoryView | None] | None = None,
        now: float | None = None,
    ) -> list[Choice | ValueError]:
        """Serve decisions together: states one by one, then one batched pass of the heads and of the
        attention over all the users' memories (numpy's per-call cost paid once, not per decision). A
        request refused (e.g. an undeclared feature) gets its ``ValueError`` and leaves the others be."""
        from engine.perception.schema import validate_features

        mems = list(memories) if memories is not None else [None] * len(ctxs)
        out: list[Choice | ValueError | None] = [None] * len(ctxs)
        served: list[int] = []
        for i, ctx in enumerate(ctxs):
            try:
                validate_features(self.schema, ctx.attributes, ctx.features, ctx.context_text)
            except ValueError as exc:
                out[i] = exc
                continue
            if mems[i] is None and self.config.use_memory:
                mems[i] = self.bank.get(ctx.user_id)
            served.append(i)
        if not served:
            return out  # type: ignore[return-value]  # every slot holds its error
        ok_ctxs, ok_mems = [ctxs[i] for i in served], [mems[i] for i in served]
        try:
            S = self.builder.encode_batch(ok_ctxs, ok_mems)
        except ValueError:  # a state no validation foresaw: find whose, row by row
            rows: list[np.ndarray] = []
            for i in list(served):
                try:
                    rows.append(self.state(ctxs[i], mems[i]))
                except ValueError as exc:
                    out[i] = exc
                    served.remove(i)
            if not served:
                return out  # type: ignore[return-value]
            S, ok_mems = np.stack(rows), [mems[i] for i in served]
        t = time.time() if now is None else now
        probs = self.act_batch(S, None, now=t, memories=ok_mems)
        for j, i in enumerate(served):
            try:
                out[i] = self._sample(probs[j], ctxs[i].variant_ids)
            except ValueError as exc:
                out[i] = exc
        return out  # type: ignore[return-value]  # every slot is filled above

    # --- learning ---------------------------------------------------------------------------------------
    def provisional_estimate(self, pd: PendingDecision) -> float:
        return pd.clicks * float(self.conv_per_click[self.slots[pd.variant_id]])

    def learn_batch(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        propensities: np.ndarray,
        users: Sequence[str] | None = None,
        times: np.ndarray | None = None,
    ) -> None:
        B = len(actions)
        if B == 0:
            return
        self.version += 1
        times = np.zeros(B) if times is None else np.asarray(times, dtype=np.float64)
        users = [f"_anon{i}" for i in range(B)] if users is None else list(users)
        order = np.argsort(times, kind="stable")
        for lo in range(0, B, self.config.minibatch):
            sel = order[lo : lo + self.config.minibatch]
            self._step(
                np.asarray(states)[sel],
                np.asarray(actions)[sel],
                np.asarray(rewards)[sel],
                np.asarray(propensities)[sel],
                [users[i] for i in sel],
                times[sel],
            )
        # the numpy copy for acting, once per call (the steps above read torch's weights)
        self._export()
        if self.residuals is not None and len(self.residuals) > 10:
            self.drift_by_variant = self.residuals.by_variant(self._slot_idx)
            self.drift_score = float(np.abs(self.drift_by_variant).max())

    def _transitions(self, S, a, r, mu, users, t):
        """Pair each decision with the same user's next state (gamma > 0); returns rows to train now."""
        cfg = self.config
        rows: list[tuple[np.ndarray, int, float, float, float, str, np.ndarray | None, float]] = []
        if cfg.gamma == 0.0:
            return [
                (S[i], int(a[i]), float(r[i]), float(mu[i]), float(t[i]), users[i], None, 0.0)
                for i in range(len(a))
            ]
        for i in range(len(a)):
            u = users[i]
            prev = self._pending_td.pop(u, None)
            if prev is not None:
                ps, pa, pr, pmu, pt = prev
                nxt = S[i] if t[i] - pt <= cfg.td_horizon else None
                rows.append((ps, pa, pr, pmu, pt, u, nxt, float(t[i])))
            self._pending_td[u] = (S[i], int(a[i]), float(r[i]), float(mu[i]), float(t[i]))
        now = float(t.max())
        for u in [u for u, v in self._pending_td.items() if now - v[4] > cfg.td_horizon]:
            ps, pa, pr, pmu, pt = self._pending_td.pop(u)
            rows.append((ps, pa, pr, pmu, pt, u, None, 0.0))
        while len(self._pending_td) > cfg.max_users:
            self._pending_td.pop(next(iter(self._pending_td)))
        return rows

    def _mem_tensors(self, users: Sequence[str], t: np.ndarray):
        mems = [self.memory_for(u, float(tb)) for u, tb in zip(users, t, strict=True)]
        recs, mask = pad_memories(mems, self.rec_width, self.config.user_memory_len)
        return torch.from_numpy(recs), torch.from_numpy(mask)

    def _forward(self, S: np.ndarray, users: Sequence[str], t: np.ndarray):
        E, slots = self._E_t, self._slots_t
        St = torch.from_numpy(np.asarray(S, dtype=np.float32))
        B, K = len(users), len(self.variant_ids)
        if self.m:
            recs, mask = self._mem_tensors(users, t)
            tt = torch.from_numpy(record_time(t))
            beta = torch.nn.functional.softplus(self.net.p["mem_beta"])
            lam = torch.nn.functional.softplus(self.net.p["mem_lam"])
            M = attention_read_torch(E[None].expand(B, K, -1), recs, mask, tt, beta[0], lam[0], self.r0)
        else:
            M = torch.zeros(B, K, 0)
        return self.net.head("critic", St, E, slots, M), self.net.head("actor", St, E, slots, M)

    def _step(self, S, a, r, mu, users, t) -> None:
        cfg = self.config
        rows = self._transitions(S, a, r, mu, users, t)
        delta = None
        if (
            self.residuals is not None and cfg.gamma > 0.0
        ):  # rows are lagged transitions: a forward of its own
            with torch.no_grad():
                q_now = self._forward(np.asarray(S), users, np.asarray(t, np.float64))[0].numpy()
            delta = np.asarray(r, np.float64) - q_now[np.arange(len(a)), np.asarray(a)]
        if rows:
            Sr = np.stack([x[0] for x in rows])
            ar = torch.tensor([x[1] for x in rows])
            rr = torch.tensor([x[2] for x in rows], dtype=torch.float32)
            mur = torch.tensor([x[3] for x in rows], dtype=torch.float32)
            tr = np.array([x[4] for x in rows])
            ur = [x[5] for x in rows]
            Q, logits = self._forward(Sr, ur, tr)
            corr = torch.from_numpy(self.correction(Sr).astype(np.float32))
            eps = cfg.min_prob
            p = torch.softmax(logits + corr / cfg.temperature, dim=-1)
            pi = (1 - eps * p.shape[1]) * p + eps
            rho = torch.clamp(pi.gather(1, ar[:, None])[:, 0].detach() / mur, max=cfg.clip_rho)
            y = rr.clone()
            nxt = [i for i, x in enumerate(rows) if x[6] is not None]
            if nxt:
                with torch.no_grad():
                    Sn = np.stack([rows[i][6] for i in nxt])
                    Qn, Ln = self._forward(Sn, [rows[i][5] for i in nxt], np.array([rows[i][7] for i in nxt]))
                    cn = torch.from_numpy(self.correction(Sn).astype(np.float32))
                    Qn = Qn + cn
                    pn = torch.softmax(Ln + cn / cfg.temperature, -1)
                    pn = (1 - eps * pn.shape[1]) * pn + eps
                    y[nxt] += cfg.gamma * (pn * Qn).sum(-1)
            q_a = Q.gather(1, ar[:, None])[:, 0]
            if delta is None and self.residuals is not None:  # gamma = 0: rows are these decisions, in order
                delta = np.asarray(r, np.float64) - q_a.detach().double().numpy()
            critic_loss = (rho * (q_a - y) ** 2).mean()
            bonus = torch.from_numpy(cfg.bonus / np.sqrt(self.counts[self._slot_idx] + 1.0)).float()
            q_plus = Q.detach() + corr + bonus[None, :]
            # the actor is fitted to the critic's Boltzmann policy by cross-entropy (forward KL): same optimum
            # as the entropy-regularised expected policy gradient, but its gradient p - p* does not vanish
            # where p(v) is small, so a near-deterministic actor still moves when a preference changes
            target = torch.softmax(q_plus / cfg.temperature, dim=-1)
            log_p = torch.log_softmax(logits + corr / cfg.temperature, dim=-1)
            actor_loss = -(rho * (target * log_p).sum(-1)).mean()
            self.opt.zero_grad()
            (critic_loss + actor_loss).backward()
            self.opt.step()
        # bookkeeping on the raw decisions of this mini-batch
        K = len(self.variant_ids)
        self.counts[self._slot_idx] *= cfg.count_decay ** len(a)
        np.add.at(self.counts, self._slot_idx[np.asarray(a)], 1.0)
        # running mean r0 <- r0 + eta (r_i - r0), applied in order, in closed form
        keep = (1.0 - cfg.reward_ewma) ** np.arange(len(r) - 1, -1, -1)
        self.r0 = float(
            self.r0 * (1.0 - cfg.reward_ewma) ** len(r) + cfg.reward_ewma * (keep @ np.asarray(r))
        )
        if self.m:
            E = self._E.astype(np.float32)
            recs = make_records(E[np.asarray(a)], np.asarray(r), np.asarray(t))
            for i, u in enumerate(users):
                self.bank.append(u, recs[i])
                self._memory_writes.setdefault(u, []).append(recs[i])
        if self.residuals is not None and delta is not None:
            self.residuals.append(np.asarray(S), self._slot_idx[np.asarray(a)], delta)  # next read prepares
        self.updates += 1
        del K

    def learn_conversions(
        self, slots: np.ndarray, clicks: np.ndarray, conv: np.ndarray, rate: float = 0.01
    ) -> None:
        """Update the expected conversion value per click of each variant from final decisions."""
        for s, c, v in zip(slots, clicks, conv, strict=True):
            if c > 0:
                self.conv_per_click[s] += rate * (v / c - self.conv_per_click[s])

    def _learn_credits(self, credits) -> None:  # type: ignore[override]
        finals = [c for c in credits if c.kind != "provisional"]
        if finals:
            self.learn_conversions(
                np.array([self.slots[c.decision.variant_id] for c in finals]),
                np.array([c.decision.clicks for c in finals]),
                np.array([c.decision.conversion_value for c in finals]),
            )
        super()._learn_credits(credits)

    def drain_memory_writes(self) -> dict[str, np.ndarray]:
        """Records appended to user memories since the last call: the edge writes them with ``put_many``."""
        out = {u: np.stack(v) for u, v in self._memory_writes.items()}
        self._memory_writes.clear()
        return out

    # --- variants ---------------------------------------------------------------------------------------
    def add_variant(
        self, variant_id: str, text: str | None = None, embedding: np.ndarray | None = None
    ) -> None:  # type: ignore[override]
        """Cold start: embed the new variant now (never at decision time) and give it the next slot."""
        if len(self.slots) >= self.config.max_variants:
            raise ValueError(f"experiment already has max_variants={self.config.max_variants}")
        if variant_id in self.variant_ids:
            raise ValueError(f"variant {variant_id!r} already exists")
        self.variants.add(variant_id, text=text, embedding=embedding)
        super().add_variant(variant_id)
        self.slots[variant_id] = len(self.slots)
        if self.config.min_prob * len(self.variant_ids) > 1.0:
            raise ValueError("min_prob x number of variants exceeds 1")
        self._export()

    def summary(self) -> dict[str, dict[str, float]]:
        q = self.q_values(np.zeros((1, self.state_dim)))[0]
        drift = self.drift_by_variant
        return {
            v: {
                "q_mean_state": float(q[i]),
                "count": float(self.counts[self.slots[v]]),
                "drift": float(drift[i]) if i < len(drift) else 0.0,
            }
            for i, v in enumerate(self.variant_ids)
        }

    # --- snapshot / restore --------------------------------------------------------------------------------
    #: Bumped whenever the snapshot's layout changes (2: the residual memory replaced the population
    #: memory). A snapshot of another format is refused with a clear error; the learner then rebuilds
    #: the policy from the reward stream (engine/learner.py).
    SNAPSHOT_FORMAT = 2

    def snapshot(self) -> dict[str, Any]:
        buf = io.BytesIO()
        torch.save({k: v.detach().clone() for k, v in self.net.p.items()}, buf)
        return {
            **self._base_snapshot(),
            "allocator": self.name,
            "format": self.SNAPSHOT_FORMAT,
            "config": self.config.model_dump(),
            "variants": self.variants.to_dict(),
            "slots": dict(self.slots),
            "weights": base64.b64encode(buf.getvalue()).decode(),
            "counts": self.counts.tolist(),
            "r0": self.r0,
            "conv_per_click": self.conv_per_click.tolist(),
            "residuals": self.residuals.to_dict() if self.residuals is not None else None,
            "updates": self.updates,
        }

    @classmethod
    def restore(
        cls, snapshot: Mapping[str, Any], *, seed: int | None = None, embedder: TextEmbedder | None = None
    ) -> Self:
        found = snapshot.get("format", 1)  # snapshots before formats were numbered are format 1
        if found != cls.SNAPSHOT_FORMAT:
            raise ValueError(
                f"actor-critic snapshot format {found}; this release reads {cls.SNAPSHOT_FORMAT}"
            )
        variants = VariantEncoder.from_dict(snapshot["variants"])
        obj = cls(
            snapshot["variant_ids"],
            seed=seed if seed is not None else snapshot["seed"],
            config=ActorCriticConfig(**snapshot["config"]),
            variant_embeddings=variants.raw,
            embedder=embedder,
            **{k: v for k, v in cls._base_kwargs(snapshot).items() if k == "schema"},
        )
        obj.slots = {k: int(v) for k, v in snapshot["slots"].items()}
        weights = torch.load(io.BytesIO(base64.b64decode(snapshot["weights"])), weights_only=True)
        with torch.no_grad():
            for k, v in weights.items():
                obj.net.p[k].copy_(v)
        obj.counts = np.asarray(snapshot["counts"], dtype=np.float64)
        obj.r0 = float(snapshot["r0"])
        obj.conv_per_click = np.asarray(snapshot["conv_per_click"], dtype=np.float64)
        if obj.residuals is not None and snapshot.get("residuals"):
            obj.residuals.load(snapshot["residuals"])
        obj.updates = int(snapshot["updates"])
        obj.version = int(snapshot["version"])
        obj._export()
        return obj
