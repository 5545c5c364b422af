"""`PoolStack`: every layer's full-precision mid pool on shared stacked buffers, compacted in one batch.

Every layer of a session has the same layout and receives the same frames at the same commits, so its
mid pool always holds the same number of entries (`used`); only which tokens survive differs per layer.
Stacking the pools (`[L, H, C, D]` keys/values, `[L, C]` metadata; `C = capacity + 1`, the last row the
dump) lets the manager score and compact the tokens leaving `recent` in all layers with one batch of
tensor ops after the last layer's commit, instead of the same dozens of small ops per layer.

Each layer still sees an ordinary `TokenPool` (`pools[layer]`) whose buffers are views of the stack, so
views, accounting, events and the per-layer code paths are unchanged. The batched `add` keeps
`TokenPool.add`'s eviction rule (arrivals and pool compete on score, exactly as many leave as arrive,
`-inf` entries leave first); adding a chunk's frames together selects the same survivors as adding them
one frame after the other (anything evicted by an earlier frame has `capacity` better entries, and keeps
them), up to ties.
"""

from __future__ import annotations

import math

import torch

from reverie.memory.token_pool import TokenPool
from reverie.memory.tokens import Tokens


class PoolStack:
    """`layers` full-precision `TokenPool`s of `capacity` tokens sharing stacked buffers.

    Buffers: `k`, `v` `[L, H, C, D]`; `frame`, `hw` int64 `[L, C]`; `score`, `count` float32 `[L, C]`.
    """

    def __init__(self, *, layers: int, capacity: int, heads: int, head_dim: int, dtype: torch.dtype, device,
                 merged: bool = False) -> None:
        if capacity < 1:
            raise ValueError("a PoolStack needs capacity >= 1")
        rows = capacity + 1
        self.capacity = capacity
        self.k = torch.zeros(layers, heads, rows, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.frame = torch.full((layers, rows), -1, dtype=torch.int64, device=device)
        self.hw = torch.zeros(layers, rows, dtype=torch.int64, device=device)
        self.score = torch.full((layers, rows), -math.inf, dtype=torch.float32, device=device)
        self.count = torch.ones(layers, rows, dtype=torch.float32, device=device)
        self.pools = [TokenPool(capacity=capacity, heads=heads, head_dim=head_dim, dtype=dtype, device=device,
                                merged=merged, buffers={n: getattr(self, n)[i] for n in _BUFFERS})
                      for i in range(layers)]

    @property
    def used(self) -> int:
        return self.pools[0].used

    def keys(self) -> torch.Tensor:
        """`[L, H, used, D]` occupied keys (a view)."""
        return self.k[:, :, : self.used]

    def add(self, tokens: Tokens, oldest_frame: int) -> None:
        """Insert `tokens` into every layer's pool at once.

        Args:
            tokens: per-layer arrivals, `k`, `v` `[L, H, n, D]`, metadata `[L, n]` (no frame older than
                `oldest_frame`). When the pools are full, each layer compacts so exactly `n` entries leave.
        """
        n = tokens.k.shape[2]
        used, cap = self.used, self.capacity
        room = min(cap - used, n)
        if room > 0:
            self._write_slice(used, tokens, room)
        if room < n:
            self._compact(Tokens(*(t.narrow(t.ndim - 2 if t.ndim == 4 else 1, room, n - room) for t in tokens)))
        for pool in self.pools:  # per-layer bookkeeping (Python ints; identical for every layer)
            pool.used = used + room
            if pool.min_frame is None or oldest_frame < pool.min_frame:
                pool.min_frame = oldest_frame
            pool.last_dest = None  # slot bookkeeping is only kept by the per-layer path (merging)

    def _write_slice(self, start: int, tokens: Tokens, count: int) -> None:
        """Arrivals `[0, count)` of every layer into slots `[start, start + count)`."""
        for name in _BUFFERS:
            src, dst = getattr(tokens, name), getattr(self, name)
            dim = 2 if dst.ndim == 4 else 1
            dst.narrow(dim, start, count).copy_(src.narrow(dim, 0, count))

    def _compact(self, tokens: Tokens) -> None:
        """Full pools: per layer, the `m` lowest-scored of pool + arrivals leave; winners take their slots."""
        cap, m = self.capacity, tokens.k.shape[2]
        scores = torch.cat((self.score[:, :cap], tokens.score), 1)  # [L, cap + m]
        holes = torch.topk(scores, m, dim=1, largest=False, sorted=False).indices
        dest = torch.sort(holes, dim=1).values.clamp_(max=cap)  # pool holes first; losing arrivals: the dump row
        lost = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, holes, True)
        order = torch.argsort(lost[:, cap:].to(torch.int8), dim=1, stable=True)  # winning arrivals first
        slot = torch.empty_like(dest).scatter_(1, order, dest)  # arrival j -> its slot (or the dump row)
        for name in _BUFFERS:
            src, dst = getattr(tokens, name), getattr(self, name)
            if dst.ndim == 4:
                l, h, _, d = src.shape
                dst.scatter_(2, slot[:, None, :, None].expand(l, h, m, d), src)
            else:
                dst.scatter_(1, slot, src)


_BUFFERS = ("k", "v", "frame", "hw", "score", "count")
