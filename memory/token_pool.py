"""`TokenPool`: a fixed-capacity, score-compacted pool of tokens in one tier (full, int8 or int4).

Eviction order (the invariant the tests check): when tokens arrive and the pool is full, the pool and the
arrivals compete on `score`; the lowest-scoring entries leave (ties: unspecified) and exactly as many
tokens leave as arrive, so occupancy never exceeds capacity. Entries with score `-inf` are empty
(merged-away arrivals) and always leave first. Compaction is branch-free tensor code: the winning arrivals
are written into the losing slots with one `index_copy_`; the pairs that would write a losing arrival go
to one extra "dump" row that is never visible.
"""

from __future__ import annotations

import math

import torch

from reverie.kernels.quant import dequantize, quantize
from reverie.kernels.view import KVSegment
from reverie.memory.tokens import Tokens


class TokenPool:
    """Per-layer pool of `capacity` tokens.

    Buffers (`C = capacity + 1`, the last row is the dump): full precision `k`, `v` `[H, C, D]`; int8 codes
    `[H, C, D]` + scales `[H, C, D // group]`; int4 packed codes `[H, C, D // 2]` + scales and zero points.
    Metadata `[C]`: `frame` (int64), `hw` (int64), `score` (float32), `count` (float32, merged tiers).
    """

    def __init__(self, *, capacity: int, heads: int, head_dim: int, dtype: torch.dtype, device,
                 bits: int = 0, group: int = 0, merged: bool = False, buffers: dict | None = None) -> None:
        """`buffers`: preallocated full-precision `k`, `v`, `frame`, `hw`, `score`, `count` of the shapes
        above to use instead of allocating (a layer's slice of a `memory.token_pool_stack.PoolStack`)."""
        if capacity < 1:
            raise ValueError("a TokenPool needs capacity >= 1")
        self.capacity, self.bits, self.group, self.merged, self.dtype = capacity, bits, group, merged, dtype
        rows = capacity + 1
        h, d = heads, head_dim
        if buffers is not None:
            if bits:
                raise ValueError("shared buffers are full precision only")
            for name, t in buffers.items():
                setattr(self, name, t)
            self._quant = ()
        elif bits == 0:
            self.k = torch.zeros(h, rows, d, dtype=dtype, device=device)
            self.v = torch.zeros_like(self.k)
            self._quant = ()
        else:
            code_d = d if bits == 8 else d // 2
            code_t = torch.int8 if bits == 8 else torch.uint8
            self.k = torch.zeros(h, rows, code_d, dtype=code_t, device=device)
            self.v = torch.zeros_like(self.k)
            shape = (h, rows, d // group)
            self.k_scale, self.v_scale = torch.zeros(shape, device=device), torch.zeros(shape, device=device)
            self.k_zero = torch.zeros(shape, device=device) if bits == 4 else None
            self.v_zero = torch.zeros(shape, device=device) if bits == 4 else None
            self._quant = tuple(n for n in ("k_scale", "v_scale", "k_zero", "v_zero") if getattr(self, n) is not None)
        if buffers is None:
            self.frame = torch.full((rows,), -1, dtype=torch.int64, device=device)
            self.hw = torch.zeros(rows, dtype=torch.int64, device=device)
            self.score = torch.full((rows,), -math.inf, dtype=torch.float32, device=device)
            self.count = torch.ones(rows, dtype=torch.float32, device=device)
        self.used = 0  # occupied slots (Python int; includes empty merged-away entries)
        self.last_dest: torch.Tensor | None = None  # slot of each arrival of the last add (-1: lost)
        self.min_frame = None  # oldest frame that may still be here (host bound for position policies)

    # ------------------------------------------------------------------ writes
    def add(self, tokens: Tokens, oldest_frame: int, want_evicted: bool = False) -> Tokens | None:
        """Insert `tokens` (`n` of them, no frame older than `oldest_frame`); when full, compact so
        exactly `n` entries leave.

        Returns the entries that left (dequantized; `n` minus the free slots there were, since arrivals
        fill free slots first) if `want_evicted` and any left, else None.
        """
        n = tokens.k.shape[1]
        if self.min_frame is None or oldest_frame < self.min_frame:
            self.min_frame = oldest_frame  # host lower bound on the frames held (position policies)
        room = self.capacity - self.used
        dev = self.frame.device
        if room >= n:
            self.last_dest = torch.arange(self.used, self.used + n, device=dev)
            self._write(self.last_dest, tokens, 0, n)
            self.used += n
            return None
        head = None
        if room > 0:
            head = torch.arange(self.used, self.capacity, device=dev)
            self._write(head, tokens, 0, room)
            self.used = self.capacity
            tokens = Tokens(*(t[:, room:] if t.ndim == 3 else t[room:] for t in tokens))
        evicted, tail = self._compact(tokens, n - room if room > 0 else n, want_evicted)
        self.last_dest = tail if head is None else torch.cat((head, tail))
        return evicted

    def _compact(self, tokens: Tokens, n: int, want_evicted: bool) -> tuple[Tokens | None, torch.Tensor]:
        """Returns the evicted entries (or None) and each arrival's slot (-1 if it lost)."""
        cap = self.capacity
        scores = torch.cat((self.score[:cap], tokens.score))
        holes = torch.topk(scores, n, largest=False, sorted=False).indices
        dest = torch.sort(holes).values  # main-pool holes first, then losing arrivals (>= cap)
        lost = torch.zeros(cap + n, dtype=torch.bool, device=scores.device)
        lost[holes] = True
        order = torch.argsort(lost[cap:].to(torch.int8), stable=True)  # winning arrivals first
        evicted = self._gather_evicted(dest, tokens) if want_evicted else None
        self._write(torch.clamp(dest, max=cap), tokens, order, None)
        slot = torch.where(dest < cap, dest, torch.full_like(dest, -1))
        return evicted, torch.empty_like(slot).scatter_(0, order, slot)

    def _write(self, dest: torch.Tensor, tokens: Tokens, src, stop) -> None:
        """Write arrivals `src` (an index tensor, or a start offset with `stop`) into slots `dest`."""
        if torch.is_tensor(src):
            def pick(t, dim):
                return t.index_select(dim, src)
        else:
            def pick(t, dim):
                return t.narrow(dim, src, stop - src)
        k, v = pick(tokens.k, 1), pick(tokens.v, 1)
        if self.bits:
            kc, ks, kz = quantize(k, self.bits, self.group)
            vc, vs, vz = quantize(v, self.bits, self.group)
            self.k.index_copy_(1, dest, kc)
            self.v.index_copy_(1, dest, vc)
            self.k_scale.index_copy_(1, dest, ks)
            self.v_scale.index_copy_(1, dest, vs)
            if self.bits == 4:
                self.k_zero.index_copy_(1, dest, kz)
                self.v_zero.index_copy_(1, dest, vz)
        else:
            self.k.index_copy_(1, dest, k.to(self.dtype))
            self.v.index_copy_(1, dest, v.to(self.dtype))
        self.frame.index_copy_(0, dest, pick(tokens.frame, 0))
        self.hw.index_copy_(0, dest, pick(tokens.hw, 0))
        self.score.index_copy_(0, dest, pick(tokens.score, 0))
        self.count.index_copy_(0, dest, pick(tokens.count, 0))

    def _gather_evicted(self, dest: torch.Tensor, tokens: Tokens) -> Tokens:
        cap = self.capacity
        in_pool = dest < cap
        p_idx = torch.clamp(dest, max=cap - 1)
        a_idx = torch.clamp(dest - cap, min=0)
        pk, pv = self.read(p_idx)
        k = torch.where(in_pool[None, :, None], pk, tokens.k.index_select(1, a_idx).to(pk.dtype))
        v = torch.where(in_pool[None, :, None], pv, tokens.v.index_select(1, a_idx).to(pv.dtype))
        meta = [torch.where(in_pool, getattr(self, n).index_select(0, p_idx), getattr(tokens, n).index_select(0, a_idx))
                for n in ("frame", "hw", "score", "count")]
        return Tokens(k, v, *meta)

    # ------------------------------------------------------------------ reads
    def read(self, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-precision keys and values of slots `idx` (default: all occupied), `[H, n, D]` each."""
        if idx is None:
            idx = torch.arange(self.used, device=self.frame.device)
        if not self.bits:
            return self.k.index_select(1, idx), self.v.index_select(1, idx)
        sel = lambda t: None if t is None else t.index_select(1, idx)  # noqa: E731
        k = dequantize(sel(self.k), sel(self.k_scale), sel(self.k_zero), self.bits, self.group, self.dtype)
        v = dequantize(sel(self.v), sel(self.v_scale), sel(self.v_zero), self.bits, self.group, self.dtype)
        return k, v

    def keys(self) -> torch.Tensor:
        """`[H, used, D]` occupied keys (a view for full precision, dequantized otherwise)."""
        if not self.bits:
            return self.k[:, : self.used]
        return self.read()[0]

    def bias(self) -> torch.Tensor | None:
        """`[used]` logit bias: `log(count)` for merged tiers, `-inf` for empty entries; None if unneeded."""
        if not self.merged:
            return None
        n = self.used
        count = self.count[:n]
        return torch.where(torch.isfinite(self.score[:n]), count.log(), torch.full_like(count, -math.inf))

    def segment(self, pos: torch.Tensor, bias: torch.Tensor | None) -> KVSegment:
        n = self.used
        if not self.bits:
            return KVSegment(k=self.k[:, :n], v=self.v[:, :n], pos=pos, bias=bias)
        cut = lambda t: None if t is None else t[:, :n]  # noqa: E731
        return KVSegment(k=self.k[:, :n], v=self.v[:, :n], pos=pos, bias=bias, k_scale=cut(self.k_scale),
                         k_zero=cut(self.k_zero), v_scale=cut(self.v_scale), v_zero=cut(self.v_zero),
                         bits=self.bits, group=self.group)

    # ------------------------------------------------------------------ bookkeeping
    def clear(self) -> None:
        self.used = 0
        self.min_frame = None
        self.score.fill_(-math.inf)
        self.count.fill_(1.0)
        self.frame.fill_(-1)

    def allocated_bytes(self) -> int:
        tensors = [self.k, self.v] + [getattr(self, n) for n in self._quant]
        total = sum(t.numel() * t.element_size() for t in tensors)
        return total + (self.count.numel() * 4 if self.merged else 0)
