"""Scorers: how tokens competing for the mid pool are ranked (higher score = keep).

One small strategy object per method, chosen by name from `SCORERS` (no if-chains). A scorer sees the
tokens leaving the recent window when they enter a pool (`score`), may refresh the scores of what a pool
already holds after each commit (`rescore`), and gets the commit pass's clean queries (`observe`). All of
it is tensor code at commit time: no host syncs. When the mid pools of all layers are stacked
(`memory.token_pool_stack.PoolStack`), the manager calls `score_all` / `rescore_all` once per chunk for every
layer; their defaults loop over the per-layer methods, and `mass`/`salience` run them as one batch.

* `recency`: FIFO (newer frame = higher score).
* `participation` (Deep Forcing PC): `(sum of the last R frames' clean queries) . k`, summed over heads,
  scaled by `1 / (sqrt(D) H)`; the whole pool is re-ranked at every commit with the new query sum. (The
  paper compresses at the first denoising step with past + current queries; here it runs at commit with
  the clean past queries, the "past-only" variant of its ablation, so views stay read-only.)
* `mass` (H2O, age-neutral): exponential moving average of the softmax attention mass that sampled clean
  queries put on each token (pre-RoPE dot products: a proxy), so old tokens are not favoured.
* `salience` (PaFu-KV): a trained S-MLP head predicts each token's salience from its key (see
  `memory.salience`), aged by `age_decay` per commit; without trained weights for the model it falls back
  to `mass` (attention proxy).
* `change` (Forcing-KV dynamic heads): `1 - segment similarity` between a leaving frame and the next
  frame (most-changing segments kept); pool scores decay so the region turns over.
"""

from __future__ import annotations

import math

import torch

from reverie.kernels.scores import participation_scores, segment_similarity
from reverie.memory.tokens import Tokens

QUERY_SAMPLES = 32  # clean queries per layer used by attention-mass scores


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, written out (torch's fused CPU softmax stalls on busy OpenMP threads
    for the small tensors scored here)."""
    e = (x - x.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def _keep_empty(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """New scores, except that empty (`-inf`) entries stay empty."""
    return torch.where(torch.isfinite(old), new, old)


class Scorer:
    """Base scorer: recency (newer frames score higher), i.e. FIFO eviction."""

    def __init__(self, cfg, spec, device) -> None:
        self.cfg, self.spec, self.device = cfg, spec, torch.device(device)
        self.trained = False

    def observe(self, layer: int, q: torch.Tensor) -> None:
        """Clean queries `[H, n, D]` of the chunk just committed at `layer`."""

    def score(self, layer: int, tokens: Tokens, store) -> torch.Tensor:
        """`[n]` float32 scores for tokens entering a pool (`store`: the layer's `LayerStore`)."""
        return tokens.frame.to(torch.float32)

    def rescore(self, layer: int, pool) -> None:
        """Update `pool.score[:pool.used]` in place (default: scores are fixed once given)."""

    def score_all(self, tokens: Tokens, stores, stack) -> torch.Tensor:
        """`[L, n]` scores of every layer's arrivals at once (`tokens`: `k`, `v` `[L, H, n, D]`, metadata
        `[L, n]`) entering the stacked mid pools `stack` (`stores`: the layers' `LayerStore`s)."""
        return torch.stack([self.score(layer, Tokens(*(t[layer] for t in tokens)), store)
                            for layer, store in enumerate(stores)])

    def rescore_all(self, stores, stack) -> None:
        """`rescore` of every layer's mid pool (all of them on `stack`)."""
        for layer, store in enumerate(stores):
            self.rescore(layer, store.mid)

    def reset(self) -> None:
        """Forget per-session state."""


class Participation(Scorer):
    def __init__(self, cfg, spec, device) -> None:
        super().__init__(cfg, spec, device)
        self.r = cfg.query_frames
        self.qsum = torch.zeros(spec.layers, self.r, spec.heads, spec.head_dim, device=self.device)
        self.seen = [0] * spec.layers
        self.scale = 1.0 / (math.sqrt(spec.head_dim) * spec.heads)

    def observe(self, layer, q):
        c, f = self.spec.chunk_frames, self.spec.tokens_per_frame
        per_frame = q.reshape(q.shape[0], c, f, q.shape[2]).float().sum(2)  # [H, C, D]
        for i in range(c):
            self.qsum[layer, self.seen[layer] % self.r].copy_(per_frame[:, i])
            self.seen[layer] += 1

    def _phi(self, layer, k):
        q = self.qsum[layer].transpose(0, 1)  # [H, R, D]: rows not yet seen are zeros and add nothing
        return participation_scores(q, k, sum_heads=True, scale=self.scale)

    def score(self, layer, tokens, store):
        return self._phi(layer, tokens.k)

    def rescore(self, layer, pool):
        n = pool.used
        if n:
            pool.score[:n] = _keep_empty(pool.score[:n], self._phi(layer, pool.keys()))

    def reset(self):
        self.qsum.zero_()
        self.seen = [0] * self.spec.layers


class AttentionMass(Scorer):
    def __init__(self, cfg, spec, device) -> None:
        super().__init__(cfg, spec, device)
        n = spec.chunk_frames * spec.tokens_per_frame
        step = max(n // QUERY_SAMPLES, 1)
        self.sample = torch.arange(0, n, step, device=self.device)[:QUERY_SAMPLES]
        self.q: list[torch.Tensor | None] = [None] * spec.layers
        self.fresh = [False] * spec.layers  # pool scores already updated by this commit's `score`
        self.decay = cfg.score_decay

    def observe(self, layer, q):
        self.q[layer] = q.index_select(1, self.sample).float()

    def _logits(self, layer, keys: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.q[layer], keys.float().transpose(1, 2)) / math.sqrt(keys.shape[-1])  # [H, Q, S]

    def _mass(self, logits: torch.Tensor) -> torch.Tensor:
        return softmax(logits).mean(dim=(0, 1)) * logits.shape[-1]  # mean mass, 1.0 = uniform share

    def score(self, layer, tokens, store):
        """Mass of the new tokens when they compete with the pool; the pool's moving averages are updated
        from the same logits (one pass per commit)."""
        if self.q[layer] is None:
            return torch.ones(tokens.k.shape[1], device=tokens.k.device)
        logits = self._logits(layer, tokens.k)
        pool = store.mid
        n = pool.used if pool is not None else 0
        if n:
            logits = torch.cat((self._logits(layer, pool.keys()), logits), -1)
        mass = self._mass(logits)
        if n:
            self._update(pool.score[:n], mass[:n])
            self.fresh[layer] = True
        return mass[n:]

    def rescore(self, layer, pool):
        if self.fresh[layer]:
            self.fresh[layer] = False
            return
        if pool.used and self.q[layer] is not None:
            self._update(pool.score[:pool.used], self._mass(self._logits(layer, pool.keys())))

    def score_all(self, tokens, stores, stack):
        """`score` of every layer in one batch: `[L, H, Q, D] @ [L, H, D, used + n]`."""
        if any(q is None for q in self.q):
            return super().score_all(tokens, stores, stack)
        n = stack.used
        q = torch.stack(self.q) * (1.0 / math.sqrt(tokens.k.shape[-1]))
        logits = torch.matmul(q, tokens.k.float().transpose(-1, -2))  # [L, H, Q, n]
        if n:  # the pool's logits, then the arrivals' (no copy of the pool's keys)
            logits = torch.cat((torch.matmul(q, stack.keys().float().transpose(-1, -2)), logits), -1)
        mass = softmax(logits).mean(dim=(1, 2)) * logits.shape[-1]
        if n:
            self._update(stack.score[:, :n], mass[:, :n])
            self.fresh = [True] * len(self.fresh)
        return mass[:, n:]

    def rescore_all(self, stores, stack):
        if all(self.fresh):
            self.fresh = [False] * len(self.fresh)
            return
        super().rescore_all(stores, stack)

    def _update(self, score, mass):
        """Moving average of `mass` into the pool scores `score` (a view, updated in place)."""
        score.copy_(_keep_empty(score, self.decay * score + (1 - self.decay) * mass))

    def reset(self):
        self.q = [None] * self.spec.layers


class Salience(Scorer):
    """PaFu-KV S-MLP scores; the attention-mass proxy when the model has no trained head."""

    def __init__(self, cfg, spec, device) -> None:
        super().__init__(cfg, spec, device)
        from reverie.memory.salience import load_salience_head

        self.head = load_salience_head(spec, cfg.salience_weights, device)
        self.trained = self.head is not None
        self.proxy = None if self.trained else AttentionMass(cfg, spec, device)

    def observe(self, layer, q):
        if self.proxy is not None:
            self.proxy.observe(layer, q)

    def score(self, layer, tokens, store):
        if self.proxy is not None:
            return self.proxy.score(layer, tokens, store)
        return self.head.predict(layer, tokens.k).clamp_min(0.0)  # targets are log1p(SSE) >= 0

    def rescore(self, layer, pool):
        if self.proxy is not None:
            self.proxy.rescore(layer, pool)
        elif pool.used and self.cfg.age_decay < 1.0:
            pool.score[:pool.used] *= self.cfg.age_decay  # -inf (empty) stays -inf

    def score_all(self, tokens, stores, stack):
        if self.proxy is not None:
            return self.proxy.score_all(tokens, stores, stack)
        return self.head.predict_all(tokens.k).clamp_min(0.0)

    def rescore_all(self, stores, stack):
        if self.proxy is not None:
            self.proxy.rescore_all(stores, stack)
        elif stack.used and self.cfg.age_decay < 1.0:
            stack.score[:, :stack.used] *= self.cfg.age_decay

    def reset(self):
        if self.proxy is not None:
            self.proxy.reset()


class Change(Scorer):
    SEGMENTS = 6

    def score(self, layer, tokens, store):
        h, n, d = tokens.k.shape
        f = self.spec.tokens_per_frame
        ring = store.recent  # its oldest frame is the one right after the last frame leaving
        slot = ring.row(len(ring.frames) - 1)
        frames = torch.cat((tokens.k.reshape(h, n // f, f, d), ring.k[:, None, slot * f:(slot + 1) * f]), 1)
        sim = segment_similarity(frames, min(self.SEGMENTS, f))  # [m, segments]
        bounds = [j * f // sim.shape[1] for j in range(sim.shape[1] + 1)]
        sizes = torch.tensor([bounds[j + 1] - bounds[j] for j in range(sim.shape[1])], device=sim.device)
        per_token = (1.0 - sim).repeat_interleave(sizes, dim=1)  # [m, f]
        return per_token.reshape(-1)

    def rescore(self, layer, pool):
        n = pool.used
        if n:
            pool.score[:n] *= self.cfg.score_decay


SCORERS: dict[str, type[Scorer]] = {
    "recency": Scorer,
    "participation": Participation,
    "mass": AttentionMass,
    "salience": Salience,
    "change": Change,
}


def register_scorer(name: str, cls: type[Scorer]) -> None:
    SCORERS[name] = cls


def make_scorer(name: str, cfg, spec, device) -> Scorer:
    try:
        cls = SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer '{name}'; available: {', '.join(SCORERS)}") from None
    return cls(cfg, spec, device)
