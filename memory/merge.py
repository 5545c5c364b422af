"""TempCache merging: a token leaving the recent window is folded into its temporal correspondent.

Identity: if tokens `G` share one key `k`, `sum_{i in G} softmax(q.k_i) v_i` equals a
single slot with key `k`, value `mean(v_i)` and logit bias `log |G|`. So a merged slot keeps its
representative key (the first one), the running mean of the values and a count; attention adds
`log(count)`. Exact for identical keys, approximate for near-duplicates (cosine >= threshold, keys
flattened over heads). A merged slot takes the newest member's frame (one temporal position) and that
frame as its recency score, so static content keeps being refreshed and survives compaction.

Correspondence is by spatial index: each layer keeps `latest[hw]`, the slot that last absorbed or
received a token with that index. Everything is branch-free tensor code (no host syncs); tokens that did
not merge are handed back for insertion, merged ones are marked empty (score `-inf`).
"""

from __future__ import annotations

import math

import torch

from reverie.memory.token_pool import TokenPool
from reverie.memory.tokens import Tokens


class TokenMerger:
    def __init__(self, threshold: float, layers: int, tokens_per_frame: int, device) -> None:
        self.threshold, self.f = threshold, tokens_per_frame
        self.latest = torch.full((layers, tokens_per_frame), -1, dtype=torch.int64, device=device)

    def merge(self, layer: int, pool: TokenPool, tokens: Tokens) -> tuple[Tokens, torch.Tensor]:
        """Fold `tokens` (one frame: `F` tokens in spatial order) into `pool` where they match.

        Returns the tokens with merged ones marked empty, and the `[F]` bool merged mask.
        """
        cap = pool.capacity
        slot = self.latest[layer]
        safe = slot.clamp(min=0)
        ok = (slot >= 0) & (slot < pool.used) & (pool.hw.index_select(0, safe) == tokens.hw)
        ok &= torch.isfinite(pool.score.index_select(0, safe))
        rep_k = pool.k.index_select(1, safe).float()
        new_k = tokens.k.float()
        norms = rep_k.pow(2).sum((0, 2)).sqrt() * new_k.pow(2).sum((0, 2)).sqrt()
        cos = (rep_k * new_k).sum((0, 2)) / norms.clamp_min(1e-8)
        merged = ok & (cos >= self.threshold)
        count = pool.count.index_select(0, safe)
        new_count = count + 1.0
        rep_v = pool.v.index_select(1, safe).float()
        mean_v = rep_v + (tokens.v.float() - rep_v) / new_count[None, :, None]
        dest = torch.where(merged, slot, torch.full_like(slot, cap))  # non-merged writes go to the dump row
        pool.v.index_copy_(1, dest, mean_v.to(pool.v.dtype))
        pool.count.index_copy_(0, dest, new_count)
        pool.frame.index_copy_(0, dest, tokens.frame)
        pool.score.index_copy_(0, dest, tokens.score)
        empty = torch.full_like(tokens.score, -math.inf)
        return tokens._replace(score=torch.where(merged, empty, tokens.score)), merged

    def after_add(self, layer: int, pool: TokenPool, tokens: Tokens, merged: torch.Tensor) -> None:
        """Point `latest[hw]` at the slots the non-merged tokens landed in (after `pool.add`)."""
        kept = torch.where(merged, self.latest[layer], pool.last_dest)
        self.latest[layer].index_copy_(0, tokens.hw, kept)

    def reset(self) -> None:
        self.latest.fill_(-1)
