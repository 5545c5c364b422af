"""Rotary embeddings of the default model: temporal (applied at read time) and spatial (applied in-model).

Head channels are laid out as `[temporal | row | col | free]`:

* the first `temporal_dims` channels carry temporal RoPE. The model never rotates them itself at
  inference: keys go to memory un-rotated and `kernels.attend` rotates queries and keys from slot positions
  (`RopeSpec(dims=temporal_dims)`). Training applies the very same rotation (`rotate_half_split`, identical
  to `kernels.rope.apply_rope_ref`) with absolute frame positions, so training and cached inference match.
* the next `row_dims` and `col_dims` channels carry spatial RoPE over the patch grid. A token's place in
  its frame never changes, so these are rotated once, before the keys are cached.

All rotations use the half-split layout: within a block of `n` channels, channel `j` pairs with channel
`j + n // 2` and turns by `pos * theta ** (-2 j / n)`.
"""

from __future__ import annotations

import torch


def rope_angles(pos: torch.Tensor, dims: int, theta: float) -> torch.Tensor:
    """Angles `[..., dims // 2]` for positions `pos` `[...]` (float32)."""
    half = dims // 2
    inv_freq = theta ** (-torch.arange(half, dtype=torch.float32, device=pos.device) * 2.0 / dims)
    return pos.to(torch.float32)[..., None] * inv_freq


def rotate_half_split(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate `x` `[..., n, dims]` by `angles` broadcastable to `[..., n, dims // 2]` (half-split pairs)."""
    return rotate_cos_sin(x, angles.cos().to(x.dtype), angles.sin().to(x.dtype))


def rotate_cos_sin(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`rotate_half_split` with precomputed `cos`/`sin` tables `[..., n, dims // 2]`."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


def apply_temporal_rope(x: torch.Tensor, pos: torch.Tensor, dims: int, theta: float) -> torch.Tensor:
    """Temporal RoPE on the first `dims` channels of `x` `[H, N, D]` at token positions `pos` `[N]`."""
    if dims == 0:
        return x
    rot = rotate_half_split(x[..., :dims], rope_angles(pos, dims, theta))
    return torch.cat((rot, x[..., dims:]), dim=-1)


class SpatialRope(torch.nn.Module):
    """Precomputed row/column RoPE for a `grid_h x grid_w` patch grid, applied to channel slices of heads.

    `forward(x)` takes `[..., H, F * n, D]` tokens (`n` whole frames in raster order, `F = grid_h * grid_w`)
    and rotates channels `[start, start + row_dims)` by row and the next `col_dims` by column.
    """

    def __init__(self, grid_h: int, grid_w: int, start: int, row_dims: int, col_dims: int, theta: float = 100.0):
        super().__init__()
        if row_dims % 2 or col_dims % 2:
            raise ValueError("spatial RoPE dims must be even")
        rows = torch.arange(grid_h).repeat_interleave(grid_w)
        cols = torch.arange(grid_w).repeat(grid_h)
        self.start, self.row_dims, self.col_dims = start, row_dims, col_dims
        self.tokens = grid_h * grid_w
        row, col = rope_angles(rows, row_dims, theta), rope_angles(cols, col_dims, theta)
        # one table over [row | col] channels: the rotation is per block, so rotate each half-split block
        self.register_buffer("row_cos", row.cos(), persistent=False)
        self.register_buffer("row_sin", row.sin(), persistent=False)
        self.register_buffer("col_cos", col.cos(), persistent=False)
        self.register_buffer("col_sin", col.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-2] // self.tokens
        s, r, c = self.start, self.row_dims, self.col_dims
        rc, rs, cc, cs = self.row_cos, self.row_sin, self.col_cos, self.col_sin
        if n != 1:
            rc, rs, cc, cs = (t.repeat(n, 1) for t in (rc, rs, cc, cs))
        row = rotate_cos_sin(x[..., s:s + r], rc.to(x.dtype), rs.to(x.dtype))
        col = rotate_cos_sin(x[..., s + r:s + r + c], cc.to(x.dtype), cs.to(x.dtype))
        return torch.cat((x[..., :s], row, col, x[..., s + r + c:]), dim=-1)
