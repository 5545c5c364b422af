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

import functools
from collections import OrderedDict

import torch

from reverie.kernels.view import RopeSpec


def inv_frequencies(spec: RopeSpec, device: torch.device | str | None = None) -> torch.Tensor:
    """`[dims // 2]` float64 angular frequencies `theta ** (-2 j / dims)` (cached per spec and device)."""
    return _inv_frequencies(spec.dims, spec.theta, torch.device(device) if device is not None else torch.device("cpu"))


@functools.lru_cache(maxsize=64)
def _inv_frequencies(dims: int, theta: float, device: torch.device) -> torch.Tensor:
    j = torch.arange(dims // 2, dtype=torch.float64, device=device)
    return theta ** (-2.0 * j / dims)


def rope_tables(pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for positions `pos`.

    Args:
        pos: `[S]` integer (or float) positions.
        spec: the RoPE layout.
        dtype: dtype of the returned tables.

    Returns:
        `(cos, sin)`, each `[S, dims // 2]`. Angles are formed in float64 so large positions keep their
        precision; the tables are then cast to `dtype`. Recently built tables are reused, so positions
        shared by every layer and denoising step of a chunk are turned into tables once: on the CPU the cache
        is keyed by the positions' values, and a miss on integer positions in `[0, 8192)` gathers rows of
        one table per (spec, dtype) instead of computing angles; on other devices the cache is keyed by the
        tensor's storage, shape, strides and version counter (no device sync; tensors without a version
        counter, i.e. inference tensors, are recomputed each time).
    """
    return _tables(pos, spec, dtype, False)


def rope_tables_full(pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The same tables spread over the rotated channels, for `apply_rope_full`.

    Returns:
        `(cos2, sin2)`, each `[S, dims]`: `cos2 = [cos, cos]`, `sin2 = [-sin, sin]` (cached like
        `rope_tables`' pair, under their own key).
    """
    return _tables(pos, spec, dtype, True)


def _tables(pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype, full: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`(cos2, sin2)` when `full`, else `(cos, sin)`, from the cache or built (and cached)."""
    key = _table_key(pos, spec, dtype)
    if key is not None:
        key += (full,)
        hit = _TABLES.get(key)
        if hit is not None:
            _TABLES.move_to_end(key)
            return hit[1:]
    pick = slice(2, 4) if full else slice(0, 2)
    gathered = _gathered(pos, spec, dtype, pick)
    tables = gathered if gathered is not None else _compute(pos, spec, dtype)[pick]
    if key is not None:
        _TABLES[key] = (pos, *tables)  # holding `pos` keeps its storage (so its data_ptr) from being reused
        if len(_TABLES) > _TABLE_CACHE_SIZE:
            _TABLES.popitem(last=False)
    return tables


def _compute(pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """`(cos, sin, cos2, sin2)` for `pos`: angles in float64, then cast to `dtype`."""
    angle = pos.to(torch.float64)[:, None] * inv_frequencies(spec, pos.device)
    cos, sin = torch.stack((angle.cos(), angle.sin())).to(dtype).unbind(0)
    return cos, sin, torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def _gathered(pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype, pick: slice) -> tuple[torch.Tensor, ...] | None:
    """Rows of the position tables `pick` (of cos, sin, cos2, sin2) for integer CPU positions in
    `[0, _POSITION_TABLE_MAX)` (None otherwise)."""
    if pos.device.type != "cpu" or pos.is_floating_point() or not pos.numel():
        return None
    lo, hi = torch.aminmax(pos)
    if int(lo) < 0 or int(hi) >= _POSITION_TABLE_MAX:  # reading values costs no device sync here
        return None
    idx = pos if pos.dtype == torch.int64 else pos.long()
    return tuple(t.index_select(0, idx) for t in _position_table(spec, dtype, int(hi) + 1)[pick])


def _position_table(spec: RopeSpec, dtype: torch.dtype, need: int) -> tuple[torch.Tensor, ...]:
    """The CPU tables of positions `0..n-1` (`n >= need`, a power of two at least 1024)."""
    key = (spec.dims, spec.theta, dtype)
    table = _POSITION_TABLES.get(key)
    if table is None or table[0].shape[0] < need:
        n = max(1024, 1 << (need - 1).bit_length())
        table = _compute(torch.arange(n), spec, dtype)
        _POSITION_TABLES[key] = table
    return table


_POSITION_TABLE_MAX = 8192  # positions past it (long sessions under `absolute` positions) are computed
_POSITION_TABLES: dict[tuple, tuple[torch.Tensor, ...]] = {}
_TABLE_CACHE_SIZE = 32
_TABLES: OrderedDict[tuple, tuple[torch.Tensor, ...]] = OrderedDict()


def _table_key(pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype) -> tuple | None:
    if pos.requires_grad:
        return None
    if pos.device.type == "cpu":  # reading values costs no device sync here
        return (pos.dtype, tuple(pos.shape), pos.contiguous().numpy().tobytes(), spec.dims, spec.theta, dtype)
    if pos.is_inference():
        return None  # no version counter to detect in-place writes: recompute rather than guess
    return (pos.data_ptr(), pos._version, tuple(pos.shape), tuple(pos.stride()), pos.dtype, pos.device,
            spec.dims, spec.theta, dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, dims: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate the first `dims` channels of `x` with precomputed tables.

    Args:
        x: `[..., S, D]` (heads leading), any float dtype.
        cos, sin: `[S, dims // 2]` from `rope_tables` (cast to `x.dtype` by the caller for speed).
        dims: rotated channels (even, `<= D`).
        out: optional `[..., S, D]` destination (may be a slice of a larger buffer, or `x` itself to rotate
            in place); a new tensor if None.

    Returns:
        the rotated tensor (`out` when given). `x` is not modified unless `out is x`.
    """
    if dims == 0:
        return apply_rope_full(x, cos, sin, 0, out)
    return apply_rope_full(x, torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1), dims, out)


def apply_rope_full(x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor, dims: int,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """`apply_rope` with tables already spread over the rotated channels (`rope_tables_full`, `[S, dims]`)."""
    if out is None:
        out = torch.empty_like(x)
    if dims < x.shape[-1] and out is not x:
        out[..., dims:].copy_(x[..., dims:])
    if dims == 0:
        return out
    half = dims // 2
    # [x1, x2] * [cos, cos] + [x2, x1] * [-sin, sin], written straight into out's rotated channels.
    swapped = torch.cat((x[..., half:dims], x[..., :half]), dim=-1)
    torch.mul(x[..., :dims], cos2, out=out[..., :dims])
    out[..., :dims].addcmul_(swapped, sin2)
    return out


def apply_rope_ref(x: torch.Tensor, pos: torch.Tensor, spec: RopeSpec) -> torch.Tensor:
    """Reference temporal RoPE: rotate `x` `[..., S, D]` at positions `pos` `[S]`.

    Computed in float32 (or the input's precision if higher) and returned in `x.dtype`. Written with
    out-of-place ops, so it is differentiable: the model can use it at training time with absolute
    positions. (`apply_rope` is the allocation-lean inference variant and does not support autograd.)
    """
    if spec.dims > x.shape[-1]:
        raise ValueError(f"RopeSpec.dims={spec.dims} exceeds head dim {x.shape[-1]}")
    if pos.ndim != 1 or pos.shape[0] != x.shape[-2]:
        raise ValueError(f"pos must be [S]={x.shape[-2]}, got {tuple(pos.shape)}")
    if spec.dims == 0:
        return x
    work = torch.promote_types(x.dtype, torch.float32)
    cos, sin = rope_tables(pos, spec, work)
    half, xw = spec.dims // 2, x.to(work)
    x1, x2 = xw[..., :half], xw[..., half:spec.dims]
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin, xw[..., spec.dims:]), dim=-1)
    return rotated.to(x.dtype)
