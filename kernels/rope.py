"""Temporal rotary position embedding (RoPE), applied at read time.

Layout (see `kernels.view.RopeSpec`): inside the first `spec.dims` channels of a head, channel `j` and
channel `j + spec.dims // 2` form a pair rotated by `angle = pos * theta ** (-2 j / dims)`:

    x[j]'          = x[j] * cos(angle) - x[j + half] * sin(angle)
    x[j + half]'   = x[j + half] * cos(angle) + x[j] * sin(angle)

Channels `>= spec.dims` pass through unchanged. Rotating a query at position `p` and a key at position `s`
makes their dot product depend on `p - s` only, which is what makes read-time positions a pure function of
slot metadata.

`apply_rope_ref` is the oracle; `rope_tables` + `apply_rope` is the same math split so a caller can build
the cos/sin tables once per position set and reuse them (the CPU attention path does that).
"""

from __future__ import annotations

import torch

from kernels.view import RopeSpec


def inv_frequencies(spec: RopeSpec, device: torch.device | str | None = None) -> torch.Tensor:
    """`[dims // 2]` float64 angular frequencies `theta ** (-2 j / dims)`."""
    half = spec.dims // 2
    j = torch.arange(half, dtype=torch.float64, device=device)
    return spec.theta ** (-2.0 * j / spec.dims)


def rope_tables(pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for positions `pos`.

    Args:
        pos: `[S]` integer (or float) positions.
        spec: the RoPE layout.
        dtype: dtype of the returned tables.

    Returns:
        `(cos, sin)`, each `[S, dims // 2]`. Angles are formed in float64 so large positions keep their
        precision; the tables are then cast to `dtype`.
    """
    angle = pos.to(torch.float64)[:, None] * inv_frequencies(spec, pos.device)[None, :]
    return angle.cos().to(dtype), angle.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, dims: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate the first `dims` channels of `x` with precomputed tables.

    Args:
        x: `[..., S, D]` (heads leading), any float dtype.
        cos, sin: `[S, dims // 2]` from `rope_tables` (cast to `x.dtype` by the caller for speed).
        dims: rotated channels (even, `<= D`).
        out: optional `[..., S, D]` destination (may be a slice of a larger buffer); a new tensor if None.

    Returns:
        the rotated tensor (`out` when given). `x` is never modified.
    """
    if out is None:
        out = torch.empty_like(x)
    if dims == 0:
        out.copy_(x)
        return out
    half = dims // 2
    x1, x2 = x[..., :half], x[..., half:dims]
    o1, o2 = out[..., :half], out[..., half:dims]
    torch.mul(x1, cos, out=o1)
    o1.addcmul_(x2, sin, value=-1.0)
    torch.mul(x2, cos, out=o2)
    o2.addcmul_(x1, sin)
    if dims < x.shape[-1]:
        out[..., dims:].copy_(x[..., dims:])
    return out


def apply_rope_ref(x: torch.Tensor, pos: torch.Tensor, spec: RopeSpec) -> torch.Tensor:
    """Reference temporal RoPE: rotate `x` `[..., S, D]` at positions `pos` `[S]`.

    Computed in float32 (or the input's precision if higher) and returned in `x.dtype`. Also usable at
    training time with absolute positions.
    """
    if spec.dims > x.shape[-1]:
        raise ValueError(f"RopeSpec.dims={spec.dims} exceeds head dim {x.shape[-1]}")
    if pos.ndim != 1 or pos.shape[0] != x.shape[-2]:
        raise ValueError(f"pos must be [S]={x.shape[-2]}, got {tuple(pos.shape)}")
    work = torch.promote_types(x.dtype, torch.float32)
    cos, sin = rope_tables(pos, spec, work)
    return apply_rope(x.to(work), cos, sin, spec.dims).to(x.dtype)
