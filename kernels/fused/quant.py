"""Triton int8/int4 per-group quantize and dequantize kernels (oracles in `kernels.quant`).

Rows (`x.reshape(-1, D)`) are processed `BLOCK_R` at a time, the full head dim per program, viewed as
`[BLOCK_R, D // GROUP, GROUP]` for the group reductions. int4 codes are packed with `tl.split` on channel
pairs (low nibble = even channel) and unpacked with `tl.join`. Rounding is half away from zero
(`floor(y + 0.5)` on non-negative int4 codes), which matches `torch.round` except at exact ties (both are
within half a step, the documented bound). Constraints: D and GROUP powers of two.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from reverie.kernels.fused._jit import lazy_jit
from reverie.kernels.quant import check_quant_args


@lazy_jit
def _codec(
    X, C, S, Z, n_rows,
    D: tl.constexpr, GROUP: tl.constexpr, BITS: tl.constexpr, BLOCK_R: tl.constexpr, DECODE: tl.constexpr,
):
    """Encode rows of `X` into codes `C`, scales `S` (and int4 zero points `Z`), or with `DECODE` the
    other way: codes, scales and zero points into rows of `X`. One row addressing for both directions."""
    NG: tl.constexpr = D // GROUP
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask_r = rows < n_rows
    rows64 = rows.to(tl.int64)
    offs_d = tl.arange(0, D)
    offs_g = tl.arange(0, NG)
    at_d = rows64[:, None] * D + offs_d[None, :]
    at_g = rows64[:, None] * NG + offs_g[None, :]
    at_p = rows64[:, None] * (D // 2) + tl.arange(0, D // 2)[None, :]  # packed int4 pairs
    row_mask = mask_r[:, None]
    if DECODE:
        scale = tl.load(S + at_g, mask=row_mask, other=0.0)
        if BITS == 8:
            code = tl.load(C + at_d, mask=row_mask, other=0).to(tl.float32)
            y = tl.reshape(code, [BLOCK_R, NG, GROUP]) * scale[:, :, None]
        else:
            packed = tl.load(C + at_p, mask=row_mask, other=0).to(tl.int32)
            code = tl.reshape(tl.join(packed & 15, packed >> 4), [BLOCK_R, D]).to(tl.float32)
            zero = tl.load(Z + at_g, mask=row_mask, other=0.0)
            y = tl.reshape(code, [BLOCK_R, NG, GROUP]) * scale[:, :, None] + zero[:, :, None]
        tl.store(X + at_d, tl.reshape(y, [BLOCK_R, D]).to(X.dtype.element_ty), mask=row_mask)
    else:
        xg = tl.reshape(tl.load(X + at_d, mask=row_mask, other=0.0).to(tl.float32), [BLOCK_R, NG, GROUP])
        if BITS == 8:
            scale = tl.max(tl.abs(xg), 2) / 127.0
            safe = tl.where(scale > 0, scale, 1.0)
            y = xg / safe[:, :, None]
            code = tl.where(y >= 0, tl.floor(y + 0.5), -tl.floor(0.5 - y))
            code = tl.minimum(tl.maximum(code, -127.0), 127.0)
            tl.store(C + at_d, tl.reshape(code, [BLOCK_R, D]).to(tl.int8), mask=row_mask)
        else:
            lo = tl.min(xg, 2)
            scale = (tl.max(xg, 2) - lo) / 15.0
            safe = tl.where(scale > 0, scale, 1.0)
            code = tl.floor((xg - lo[:, :, None]) / safe[:, :, None] + 0.5)
            code = tl.minimum(tl.maximum(code, 0.0), 15.0).to(tl.int32)
            even, odd = tl.split(tl.reshape(code, [BLOCK_R, D // 2, 2]))
            tl.store(C + at_p, (even | (odd << 4)).to(tl.uint8), mask=row_mask)
            tl.store(Z + at_g, lo, mask=row_mask)
        tl.store(S + at_g, scale, mask=row_mask)


def _check_pow2(d: int, group: int) -> None:
    if d & (d - 1) or group & (group - 1):
        raise ValueError(f"the triton quantization kernels need power-of-two D and group, got D={d}, group={group}")


def quantize_triton(x: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Same contract as `kernels.quant.quantize_ref`."""
    d = x.shape[-1]
    check_quant_args(d, bits, group)
    _check_pow2(d, group)
    rows = x.reshape(-1, d).contiguous()
    n = rows.shape[0]
    lead = x.shape[:-1]
    codes = torch.empty(*lead, d if bits == 8 else d // 2, dtype=torch.int8 if bits == 8 else torch.uint8, device=x.device)
    scale = torch.empty(*lead, d // group, dtype=torch.float32, device=x.device)
    zero = torch.empty_like(scale) if bits == 4 else None
    block_r = 16
    _codec[(triton.cdiv(n, block_r),)](rows, codes, scale, zero if zero is not None else scale, n,
                                      D=d, GROUP=group, BITS=bits, BLOCK_R=block_r, DECODE=False)
    return codes, scale, zero


def dequantize_triton(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int, group: int,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Same contract as `kernels.quant.dequantize_ref`."""
    d = codes.shape[-1] * (2 if bits == 4 else 1)
    check_quant_args(d, bits, group)
    _check_pow2(d, group)
    if bits == 4 and zero is None:
        raise ValueError("int4 dequantization needs the zero points")
    lead = codes.shape[:-1]
    out = torch.empty(*lead, d, dtype=dtype, device=codes.device)
    c = codes.reshape(-1, codes.shape[-1]).contiguous()
    s = scale.reshape(-1, d // group).contiguous().float()
    z = zero.reshape(-1, d // group).contiguous().float() if zero is not None else s
    n = c.shape[0]
    block_r = 16
    _codec[(triton.cdiv(n, block_r),)](out, c, s, z, n, D=d, GROUP=group, BITS=bits, BLOCK_R=block_r, DECODE=True)
    return out
