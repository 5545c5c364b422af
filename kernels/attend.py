"""`attend(q, view)`: attention of the current chunk's queries over a memory view.

Semantics (every backend computes this; `attend_ref` is the float32 oracle):

    for each segment s of view.segments (cache tiers, then the scratch chunk):
        slots   = s.index if given else all slots
        K_s     = dequantize(s.k)[:, slots] rotated by temporal RoPE at s.pos[slots]
        V_s     = dequantize(s.v)[:, slots]
        b_s     = s.bias[..., slots] (0 if None; `[S]` is shared by all heads)
    K, V, b = concatenation over segments
    out     = softmax(RoPE(q, view.q_pos) K^T / sqrt(D) + b) V

There is no causal mask: visibility is data (the gather index, or a `-inf` bias). Every head must see at
least one slot with a finite bias.

On the CPU the torch path gathers a multi-segment view into buffers of a per-thread workspace that grows
to the largest view it has read and is then reused (`_Workspace`): allocating them per call made glibc map
and unmap them, and at 1024 frames of history that cost ~3,900 page faults and ~5 ms of system time per
frame (`window` at a quarter budget). The workspace holds at most one view's keys, values and RoPE tables
in the working dtype, which every call allocated anyway.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from reverie.kernels.quant import dequantize_ref
from reverie.kernels.rope import apply_rope_full, rope_tables_full
from reverie.kernels.view import KVSegment, KVView, RopeSpec


def attend(q: torch.Tensor, view: KVView) -> torch.Tensor:
    """Attention of `q` over `view` on the selected backend (see `kernels.backends`).

    Args:
        q: `[H, Nq, D]` queries before temporal RoPE (float32, float16 or bfloat16).
        view: the keys/values to read; `view.q_pos` `[Nq]` are the queries' temporal positions.

    Returns:
        `[H, Nq, D]` in `q.dtype`.
    """
    from reverie.kernels.backends import select

    return select(q, view).load()(q, view)


def attend_ref(q: torch.Tensor, view: KVView) -> torch.Tensor:
    """The oracle: same semantics as `attend`, every step in float32. Returns float32 `[H, Nq, D]`."""
    return attend_torch(q, view, upcast=True)


def attend_torch(q: torch.Tensor, view: KVView, *, upcast: bool = False) -> torch.Tensor:
    """Pure-torch attention (the CPU path): RoPE + gather + dequantize in torch, then SDPA.

    Works in `q.dtype` (float32 when `upcast`). A single float segment without index or bias goes straight
    to `scaled_dot_product_attention` after RoPE; otherwise rotated keys are written once into one buffer.

    Returns:
        `[H, Nq, D]` in `q.dtype` (float32 when `upcast`).
    """
    check_view(q, view)
    work = torch.float32 if upcast else q.dtype
    spec = view.rope
    qr = _rotate(q.to(work), view.q_pos, spec, work)
    segments = [s for s in view.segments if s.visible > 0]
    if len(segments) == 1 and _plain(segments[0]):
        seg = segments[0]
        kr = _rotate(seg.k.to(work), seg.pos, spec, work)
        return _sdpa(qr, kr, seg.v.to(work), None)
    h, _, d = q.shape
    total = sum(s.visible for s in segments)
    k_all, v_all, cos_all, sin_all = _WORKSPACE.take(h, total, d, spec.dims, work, q.device)
    bias_all = _bias_buffer(segments, h, total, work, q.device)
    cos_parts, sin_parts = [], []
    start = 0
    for seg in segments:
        stop = start + seg.visible
        _read_into(seg, k_all[:, start:stop], v_all[:, start:stop])
        if spec.dims:
            cos, sin = rope_tables_full(seg.pos, spec, work)  # per slot; cached while seg.pos is unchanged
            if seg.index is not None:
                cos, sin = cos.index_select(0, seg.index), sin.index_select(0, seg.index)
            cos_parts.append(cos)
            sin_parts.append(sin)
        if bias_all is not None and seg.bias is not None:
            bias_all[:, start:stop] = seg.bias if seg.index is None else seg.bias.index_select(-1, seg.index)
        start = stop
    if spec.dims:  # one in-place rotation of every gathered key
        cos = torch.cat(cos_parts, out=cos_all) if cos_all is not None else torch.cat(cos_parts)
        sin = torch.cat(sin_parts, out=sin_all) if sin_all is not None else torch.cat(sin_parts)
        apply_rope_full(k_all, cos, sin, spec.dims, out=k_all)
    return _sdpa(qr, k_all, v_all, bias_all)


class _Workspace(threading.local):
    """Per-thread gather buffers for `attend_torch` on the CPU: keys and values `[H, N, D]` and the RoPE
    tables `[N, dims]` of a view, carved from flat buffers that only grow (elsewhere: fresh tensors, as
    the device's caching allocator already reuses memory)."""

    def __init__(self) -> None:
        self.flat: dict[torch.dtype, torch.Tensor] = {}  # one flat buffer per working dtype

    def take(self, h: int, n: int, d: int, dims: int, dtype: torch.dtype, device: torch.device):
        if device.type != "cpu":
            k = torch.empty(h, n, d, dtype=dtype, device=device)
            return k, torch.empty_like(k), None, None
        kv, tab = h * n * d, n * dims
        need = 2 * kv + 2 * tab
        flat = self.flat.get(dtype)
        if flat is None or flat.numel() < need:
            with torch.inference_mode(False):  # a normal tensor: writable in and out of inference mode
                flat = self.flat[dtype] = torch.empty(max(need, 2 * (0 if flat is None else flat.numel())),
                                                      dtype=dtype)
        k, v = flat[:kv].view(h, n, d), flat[kv:2 * kv].view(h, n, d)
        cos, sin = flat[2 * kv:2 * kv + tab].view(n, dims), flat[2 * kv + tab:need].view(n, dims)
        return k, v, cos, sin


_WORKSPACE = _Workspace()


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SDPA on `[H, N, D]` tensors with an optional `[1 or H, N]` logit bias.

    Called with a batch dimension: on the CPU, 3-D inputs take the unfused math path (materialised
    logits, 2.5-4x slower here) while 4-D inputs take the fused flash kernel, with or without a mask.
    """
    mask = None if bias is None else bias[None, :, None, :]
    return F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask)[0]


def _read_into(seg: KVSegment, k_out: torch.Tensor, v_out: torch.Tensor) -> None:
    """Write a segment's visible keys (pre-RoPE) and values into `[H, N, D]` slices of the work buffers."""
    if seg.bits:
        k_out.copy_(_dequantized(seg, "k", k_out.dtype))
        v_out.copy_(_dequantized(seg, "v", v_out.dtype))
        return
    for src, dst in ((seg.k, k_out), (seg.v, v_out)):
        if seg.index is None:
            dst.copy_(src)
        elif src.dtype == dst.dtype:
            torch.index_select(src, 1, seg.index, out=dst)
        else:
            dst.copy_(src.index_select(1, seg.index))


def read_segment(seg: KVSegment, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Visible keys and values of one segment, gathered and dequantized: two `[H, N, D]` in `dtype`.

    Keys are returned before RoPE. Gathering happens on the codes and scales, before dequantization.
    """
    if not seg.bits:
        k, v = seg.k, seg.v
        if seg.index is not None:
            k, v = k.index_select(1, seg.index), v.index_select(1, seg.index)
        return k.to(dtype), v.to(dtype)
    return _dequantized(seg, "k", dtype), _dequantized(seg, "v", dtype)


def check_view(q: torch.Tensor, view: KVView) -> None:
    """Raise ValueError on shape mismatches between `q` and `view` (shapes only: no device sync)."""
    if q.ndim != 3:
        raise ValueError(f"q must be [H, Nq, D], got {tuple(q.shape)}")
    h, nq, d = q.shape
    if view.q_pos.shape != (nq,):
        raise ValueError(f"view.q_pos must be [Nq]={nq}, got {tuple(view.q_pos.shape)}")
    if view.rope.dims > d:
        raise ValueError(f"RopeSpec.dims={view.rope.dims} exceeds head dim {d}")
    if not any(s.visible for s in view.segments):
        raise ValueError("the view has no visible slots (it must at least hold the scratch chunk)")
    for i, seg in enumerate(view.segments):
        dk = d // 2 if seg.bits == 4 else d
        if seg.bits not in (0, 4, 8):
            raise ValueError(f"segment {i}: bits must be 0, 4 or 8, got {seg.bits}")
        s = seg.pos.shape[0]
        for name in ("k", "v"):
            t = getattr(seg, name)
            if tuple(t.shape) != (h, s, dk):
                raise ValueError(f"segment {i}: {name} must be [H, S, D{'/2' if seg.bits == 4 else ''}]={(h, s, dk)}, got {tuple(t.shape)}")
        if seg.bits and (not seg.group or d % seg.group or seg.k_scale is None or seg.v_scale is None):
            raise ValueError(f"segment {i}: a quantized segment needs a group dividing D={d} and k/v scales")
        if seg.bits == 4 and (seg.k_zero is None or seg.v_zero is None):
            raise ValueError(f"segment {i}: an int4 segment needs k/v zero points")
        if seg.bias is not None and tuple(seg.bias.shape) not in ((s,), (h, s)):
            raise ValueError(f"segment {i}: bias must be [S] or [H, S] with S={s}, got {tuple(seg.bias.shape)}")
        if seg.index is not None and seg.index.ndim != 1:
            raise ValueError(f"segment {i}: index must be 1-D, got {tuple(seg.index.shape)}")


def _plain(seg: KVSegment) -> bool:
    return not seg.bits and seg.index is None and seg.bias is None


def _rotate(x: torch.Tensor, pos: torch.Tensor, spec: RopeSpec, dtype: torch.dtype) -> torch.Tensor:
    if not spec.dims:
        return x
    cos2, sin2 = rope_tables_full(pos, spec, dtype)
    return apply_rope_full(x, cos2, sin2, spec.dims)


def _bias_buffer(segments: list[KVSegment], h: int, total: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    biased = [s.bias for s in segments if s.bias is not None]
    if not biased:
        return None
    rows = h if any(b.ndim == 2 for b in biased) else 1
    return torch.zeros(rows, total, dtype=dtype, device=device)


def _dequantized(seg: KVSegment, name: str, dtype: torch.dtype) -> torch.Tensor:
    codes, scale, zero = getattr(seg, name), getattr(seg, f"{name}_scale"), getattr(seg, f"{name}_zero")
    if seg.index is not None:
        codes, scale = codes.index_select(1, seg.index), scale.index_select(1, seg.index)
        zero = None if zero is None else zero.index_select(1, seg.index)
    return dequantize_ref(codes, scale, zero, seg.bits, seg.group, dtype)
