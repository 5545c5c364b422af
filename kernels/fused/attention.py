"""Fused attention over a memory view: RoPE at read + gather + dequantize + slot bias + online softmax.

One kernel launch per segment; the online-softmax state (running max `m`, running sum `l`, unnormalised
accumulator) is carried from one segment's launch to the next in float32 buffers, so the result equals a
single softmax over the concatenated segments without ever materialising gathered, dequantized or rotated
keys. Per program: one head, `BLOCK_M` queries; keys stream in tiles of `BLOCK_N` slots:

    slot  = index[n] (or n)                       gather by slot index
    k     = dequant(codes[slot]) (int8: c * s; int4: nibble * s + z)
    k     = k * cos[slot] + rot(k) * sin[slot]    temporal RoPE at read (half-split pairs; per-slot tables
                                                  built on the host once per position tensor, cached)
    s     = (q . k) / sqrt(D) + bias[slot]        (base-2 logits: scaled by log2 e)
    m, l, acc updated flash-style; the last segment divides by l and writes q.dtype.

The oracle is `kernels.attend.attend_ref`. Constraints: head dim a power of two >= 16.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from reverie.kernels.attend import check_view
from reverie.kernels.fused._jit import interpreting, lazy_jit
from reverie.kernels.rope import apply_rope, rope_tables
from reverie.kernels.view import KVSegment, KVView

LOG2E = 1.4426950408889634


@lazy_jit
def _attend_segment(
    Q, K, V, COS, SIN, IDX, BIAS, KS, KZ, VS, VZ, ACC, M, L, O,
    n_keys, n_q, qk_scale,
    sq_h, sq_m, sk_h, sk_s, sv_h, sv_s, sks_h, sks_s, svs_h, svs_s, sb_h,
    D: tl.constexpr, ROPE_DIMS: tl.constexpr, HALF_P: tl.constexpr, BITS: tl.constexpr, GROUP: tl.constexpr,
    HAS_INDEX: tl.constexpr, HAS_BIAS: tl.constexpr, FIRST: tl.constexpr, LAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_F32: tl.constexpr,
):
    h = tl.program_id(1)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D)
    mask_m = offs_m < n_q
    q = tl.load(Q + h * sq_h + offs_m[:, None] * sq_m + offs_d[None, :], mask=mask_m[:, None], other=0.0)

    # Read-time RoPE per channel: partner channel, sign, and column `pair` of the per-slot cos/sin tables
    # (`[S, ROPE_DIMS // 2]`, built once per position tensor on the host); identity past ROPE_DIMS.
    half: tl.constexpr = ROPE_DIMS // 2
    rotated = offs_d < ROPE_DIMS
    first_half = offs_d < half
    partner = tl.where(first_half, offs_d + half, tl.where(rotated, offs_d - half, offs_d))
    sign = tl.where(first_half, -1.0, 1.0)
    pair = tl.where(first_half, offs_d, tl.where(rotated, offs_d - half, 0))

    # Online-softmax state, carried across segments through ACC/M/L (row-major [H, n_q, D] / [H, n_q]).
    state = h * n_q + offs_m
    if FIRST:
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D], tl.float32)
    else:
        m_i = tl.load(M + state, mask=mask_m, other=float("-inf"))
        l_i = tl.load(L + state, mask=mask_m, other=0.0)
        acc = tl.load(ACC + state[:, None] * D + offs_d[None, :], mask=mask_m[:, None], other=0.0)

    for start in range(0, n_keys, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        mask_n = offs_n < n_keys
        if HAS_INDEX:
            slot = tl.load(IDX + offs_n, mask=mask_n, other=0)
        else:
            slot = offs_n
        slot = slot.to(tl.int64)

        # Keys and values of the tile, dequantized to float32.
        kbase = K + h * sk_h + slot[:, None] * sk_s
        vbase = V + h * sv_h + slot[:, None] * sv_s
        if BITS == 0:
            k = tl.load(kbase + offs_d[None, :], mask=mask_n[:, None], other=0.0).to(tl.float32)
            v = tl.load(vbase + offs_d[None, :], mask=mask_n[:, None], other=0.0).to(tl.float32)
        else:
            ksbase = KS + h * sks_h + slot[:, None] * sks_s
            vsbase = VS + h * svs_h + slot[:, None] * svs_s
            gk = offs_d[None, :] // GROUP
            if BITS == 8:
                k = tl.load(kbase + offs_d[None, :], mask=mask_n[:, None], other=0).to(tl.float32)
                v = tl.load(vbase + offs_d[None, :], mask=mask_n[:, None], other=0).to(tl.float32)
                k = k * tl.load(ksbase + gk, mask=mask_n[:, None], other=0.0)
                v = v * tl.load(vsbase + gk, mask=mask_n[:, None], other=0.0)
            else:
                kzbase = KZ + h * sks_h + slot[:, None] * sks_s
                vzbase = VZ + h * svs_h + slot[:, None] * svs_s
                kb = tl.load(kbase + offs_d[None, :] // 2, mask=mask_n[:, None], other=0).to(tl.int32)
                vb = tl.load(vbase + offs_d[None, :] // 2, mask=mask_n[:, None], other=0).to(tl.int32)
                k = ((kb >> ((offs_d[None, :] % 2) * 4)) & 15).to(tl.float32)
                v = ((vb >> ((offs_d[None, :] % 2) * 4)) & 15).to(tl.float32)
                k = k * tl.load(ksbase + gk, mask=mask_n[:, None], other=0.0) + tl.load(kzbase + gk, mask=mask_n[:, None], other=0.0)
                v = v * tl.load(vsbase + gk, mask=mask_n[:, None], other=0.0) + tl.load(vzbase + gk, mask=mask_n[:, None], other=0.0)

        if ROPE_DIMS > 0:
            # Table rows [BLOCK_N, HALF_P] spread to channels, and the partner channel, by register gathers.
            offs_h = tl.arange(0, HALF_P)
            tmask = mask_n[:, None] & (offs_h < half)[None, :]
            c = tl.load(COS + slot[:, None] * half + offs_h[None, :], mask=tmask, other=1.0)
            sn = tl.load(SIN + slot[:, None] * half + offs_h[None, :], mask=tmask, other=0.0)
            pair_idx = tl.broadcast_to(pair[None, :], [BLOCK_N, D])
            cos = tl.where(rotated[None, :], tl.gather(c, pair_idx, 1), 1.0)
            sin = tl.where(rotated[None, :], tl.gather(sn, pair_idx, 1), 0.0)
            kp = tl.gather(k, tl.broadcast_to(partner[None, :], [BLOCK_N, D]), 1)
            k = k * cos + sign[None, :] * kp * sin

        # Operands are rounded to q's dtype (bf16/fp16 MMA, fp32 accumulation). DOT_F32 (interpreter only,
        # whose bf16 dot is wrong) keeps that rounding but multiplies in float32: the same numbers.
        k = k.to(q.dtype)
        if DOT_F32:
            s = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)))
        else:
            s = tl.dot(q, tl.trans(k))
        s = s * qk_scale
        if HAS_BIAS:
            b = tl.load(BIAS + h * sb_h + slot, mask=mask_n, other=0.0).to(tl.float32)
            s += b[None, :] * 1.4426950408889634
        s = tl.where(mask_n[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        if DOT_F32:
            pv = tl.dot(p.to(q.dtype).to(tl.float32), v.to(q.dtype).to(tl.float32))
        else:
            pv = tl.dot(p.to(q.dtype), v.to(q.dtype))
        acc = acc * alpha[:, None] + pv
        m_i = m_new

    if LAST:
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
        tl.store(O + h * sq_h + offs_m[:, None] * sq_m + offs_d[None, :], out.to(O.dtype.element_ty), mask=mask_m[:, None])
    else:
        tl.store(M + state, m_i, mask=mask_m)
        tl.store(L + state, l_i, mask=mask_m)
        tl.store(ACC + state[:, None] * D + offs_d[None, :], acc, mask=mask_m[:, None])


def attend_triton(q: torch.Tensor, view: KVView, *, block_m: int | None = None, block_n: int | None = None) -> torch.Tensor:
    """Fused attention, same contract as `kernels.attend.attend` (`q` `[H, Nq, D]` -> `[H, Nq, D]`, q.dtype)."""
    check_view(q, view)
    h, nq, d = q.shape
    if d < 16 or d & (d - 1):
        raise ValueError(f"the triton attention kernel needs a power-of-two head dim >= 16, got {d}")
    spec = view.rope
    qr = q.float()
    if spec.dims:
        cos, sin = rope_tables(view.q_pos, spec)
        qr = apply_rope(qr, cos, sin, spec.dims)
    qr = qr.to(q.dtype).contiguous()
    out = torch.empty_like(qr)
    segments = [s for s in view.segments if s.visible > 0]
    block_m, block_n, num_warps, num_stages = launch_config(nq, block_m, block_n)
    if len(segments) > 1:
        acc = torch.empty(h, nq, d, dtype=torch.float32, device=q.device)
        m = torch.empty(h, nq, dtype=torch.float32, device=q.device)
        l = torch.empty_like(m)
    else:
        acc = m = l = out  # unused placeholders
    grid = (triton.cdiv(nq, block_m), h)
    qk_scale = LOG2E / math.sqrt(d)
    for i, seg in enumerate(segments):
        cos, sin = rope_tables(seg.pos, spec) if spec.dims else (seg.pos, seg.pos)  # [S, dims/2] per slot
        _launch(seg, qr, cos, sin, acc, m, l, out, grid, nq, qk_scale, spec.dims,
                first=i == 0, last=i == len(segments) - 1, block_m=block_m, block_n=block_n, num_warps=num_warps,
                num_stages=num_stages)
    return out


def launch_config(nq: int, block_m: int | None = None, block_n: int | None = None) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) for `nq` queries.

    Not timed on a GPU (none was available when this was written); chosen from sm_90 compiles (ptxas -v,
    D=128, 44 RoPE channels, bf16/int8/int4 tiers): 128x32 tiles with 8 warps spill at most ~130 bytes
    and amortise the read-time rotation of each key tile over 128 queries; 64x32 with 8 warps spills
    ~0-20 bytes; 128x64 spilled 260-730 bytes and 16x64 with 4 warps over 1 KB. Two pipeline stages keep
    shared memory under ~115 KB. The interpreter (tests) gets 64-key tiles: fewer, larger numpy steps.
    """
    if block_m is None:
        block_m = 128 if nq >= 256 else 64 if nq > 32 else 16
    if block_n is None:
        block_n = 64 if interpreting() else 32
    return block_m, block_n, 8 if block_m >= 64 else 4, 2


def _launch(seg: KVSegment, q, cos, sin, acc, m, l, out, grid, nq, qk_scale, rope_dims, *, first, last, block_m, block_n, num_warps, num_stages):
    k, v = _unit_stride(seg.k), _unit_stride(seg.v)
    bits = seg.bits
    ks = _unit_stride(seg.k_scale) if bits else k
    vs = _unit_stride(seg.v_scale) if bits else v
    kz = _unit_stride(seg.k_zero) if bits == 4 else ks
    vz = _unit_stride(seg.v_zero) if bits == 4 else vs
    if bits == 4 and (kz.stride() != ks.stride() or vz.stride() != vs.stride()):
        kz, vz, ks, vs = kz.contiguous(), vz.contiguous(), ks.contiguous(), vs.contiguous()
    bias = seg.bias
    bias_h = 0
    if bias is not None:
        bias = bias.contiguous()
        bias_h = bias.shape[-1] if bias.ndim == 2 else 0
    index = seg.index.contiguous() if seg.index is not None else seg.pos
    _attend_segment[grid](
        q, k, v, cos, sin, index, bias if bias is not None else q, ks, kz, vs, vz, acc, m, l, out,
        seg.visible, nq, qk_scale,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        ks.stride(0), ks.stride(1), vs.stride(0), vs.stride(1), bias_h,
        D=q.shape[-1], ROPE_DIMS=rope_dims, HALF_P=triton.next_power_of_2(max(1, rope_dims // 2)), BITS=bits, GROUP=seg.group or 1,
        HAS_INDEX=seg.index is not None, HAS_BIAS=bias is not None, FIRST=first, LAST=last,
        BLOCK_M=block_m, BLOCK_N=block_n, DOT_F32=interpreting(), num_warps=num_warps, num_stages=num_stages,
    )


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    """`t` itself when its last dim is contiguous (any head/slot strides are fine), else a contiguous copy."""
    return t if t.stride(-1) == 1 else t.contiguous()
