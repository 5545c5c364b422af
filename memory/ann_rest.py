"""What an ANN-restricted view does with the ring frames its index leaves out (`PolicyConfig.ann_rest_tokens`).

0 (TempCache's AnnSA as published): they are not attended. `n` > 0: each left-out frame is attended as `n`
mean tokens, the means of its `F / n` consecutive slots (for a model that lays a frame's tokens out in
raster order, neighbouring patches) per head, keys and values, each with a logit bias of `log(F / n)`, so
a group gets the weight its tokens would get if they were all its mean:

    sum_i exp(q . k_i / sqrt(D)) v_i  ~  (F / n) exp(q . mean(k) / sqrt(D)) mean(v)      (over a group)

exact when a group's keys are equal, and an underestimate of its share otherwise (Jensen: the mean of
`exp` is at least the `exp` of the mean), the more so the more its keys differ. A model whose attention
spreads over many frames (the default model's does: 60-85 % of its middle and last layers' attention
at 1024 frames of history lies outside the frames `ann` picks) loses that share with 0, and the error
grows with the history; the means keep most of it at `n / F` of the frames' tokens. Keys are stored
before temporal RoPE and every token of a frame has the frame's position, so the mean of the rotated keys
is the rotated mean: a group is placed at its frame's position like its tokens.

The means are written when a frame is (float32 sums, stored in the cache's dtype), and the budget pays for
them (`FrameMeans.frame_bytes`).
"""

from __future__ import annotations

import math

import torch

from reverie.kernels.view import KVSegment


def mean_tokens(requested: int, tokens_per_frame: int) -> int:
    """The mean tokens a left-out frame keeps: `requested` rounded down to a divisor of `tokens_per_frame`
    (0: none)."""
    if requested < 0:
        raise ValueError(f"ann_rest_tokens must be >= 0, got {requested}")
    n = min(requested, tokens_per_frame)
    while n and tokens_per_frame % n:
        n -= 1
    return n


class FrameMeans:
    """Each ring frame's `n` group means per head, keys and values `[H, frames * n, D]` in the cache dtype
    (group `j` of frame row `r` at index `r * n + j`).

    Args:
        heads, head_dim, frames: the ring's geometry (`frames` = its capacity).
        tokens_per_frame: slots of one frame (`F`); writes start on a frame boundary.
        tokens: means per frame (`n`, a divisor of `F`).
    """

    def __init__(self, *, heads: int, head_dim: int, frames: int, tokens_per_frame: int, tokens: int, dtype,
                 device) -> None:
        if tokens < 1 or tokens_per_frame % tokens:
            raise ValueError(f"a frame of {tokens_per_frame} slots has no {tokens} equal groups")
        self.f, self.n = tokens_per_frame, tokens
        self.k = torch.zeros(heads, frames * tokens, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.bias = torch.full((frames * tokens,), math.log(tokens_per_frame // tokens), dtype=torch.float32,
                               device=device)

    @staticmethod
    def frame_bytes(heads: int, head_dim: int, tokens: int, dtype) -> int:
        """Bytes of one frame's means (keys and values), one layer."""
        return 2 * tokens * heads * head_dim * torch.empty((), dtype=dtype).element_size()

    def write(self, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Keep the group means of keys and values `[H, m, D]` (whole frames) written to slots
        `start .. start + m`."""
        if start % self.f or k.shape[1] % self.f:
            raise ValueError(f"frame means are written whole frames of {self.f} slots, got slots "
                             f"{start}..{start + k.shape[1]}")
        a, b = start // self.f * self.n, (start + k.shape[1]) // self.f * self.n
        for src, dst in ((k, self.k), (v, self.v)):
            dst[:, a:b] = src.float().reshape(src.shape[0], b - a, self.f // self.n, -1).mean(2).to(dst.dtype)

    def clear(self) -> None:
        self.k.zero_()
        self.v.zero_()

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def segment(self, ring_pos: torch.Tensor, rows: int, rest: torch.Tensor) -> KVSegment:
        """The left-out frames `rest` (int64 rows of the ring, `[m]`) as their group means: the frames'
        positions (`ring_pos`: the ring segment's per-slot positions), bias `log(F / n)`."""
        groups = (rest[:, None] * self.n + torch.arange(self.n, device=rest.device)).flatten()
        return KVSegment(k=self.k[:, :rows * self.n], v=self.v[:, :rows * self.n],
                         pos=ring_pos[:rows * self.f:self.f // self.n], index=groups, bias=self.bias[:rows * self.n])
