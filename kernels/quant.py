"""Per-group KV quantization: int8 symmetric and int4 asymmetric (packed two codes per byte).

Storage format (the one `kernels.view.KVSegment` documents), for `x` `[..., D]` and `group` dividing `D`:

* `bits == 8`: `codes` int8 `[..., D]`, `scale` float32 `[..., D // group]` = `absmax / 127` of the group,
  `zero` None. Dequantized value: `codes * scale`.
* `bits == 4`: `codes` uint8 `[..., D // 2]`, byte `i` holds channel `2 i` in its low nibble and channel
  `2 i + 1` in its high nibble; `scale` float32 `[..., D // group]` = `(max - min) / 15`, `zero` float32
  `[..., D // group]` = `min`. Dequantized value: `code * scale + zero`, `code` in `0..15`.

Round-trip error bound (what the tests check): for every element, `|dequantize(quantize(x)) - x| <=
scale / 2` of its group (round-to-nearest on a uniform grid that covers the group's range), up to float32
rounding of the arithmetic (a few ulps of the group's magnitude). A group of zeros (or of one repeated value
for int4) has `scale == 0` and round-trips exactly.

`quantize_ref` / `dequantize_ref` are the pure-torch oracles. `quantize` / `dequantize` are the public
entry points: Triton kernels on CUDA (or under `TRITON_INTERPRET=1` when asked), the references otherwise.
"""

from __future__ import annotations

import torch

SUPPORTED_BITS = (8, 4)


def check_quant_args(d: int, bits: int, group: int) -> None:
    """Raise ValueError unless (bits, group) is a valid layout for head dim `d`."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"bits must be one of {SUPPORTED_BITS}, got {bits}")
    if group <= 0 or d % group:
        raise ValueError(f"group must be a positive divisor of the last dim {d}, got {group}")
    if bits == 4 and d % 2:
        raise ValueError(f"int4 packing needs an even last dim, got {d}")


def _grouped(x: torch.Tensor, group: int) -> torch.Tensor:
    return x.reshape(*x.shape[:-1], x.shape[-1] // group, group)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes `[..., D]` in 0..15 -> packed uint8 `[..., D // 2]` (low nibble = even channel)."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """packed uint8 `[..., D // 2]` -> uint8 codes `[..., D]` in 0..15."""
    return torch.stack((packed & 0xF, packed >> 4), dim=-1).flatten(-2)


def quantize_ref(x: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantize `x` `[..., D]` per group of `group` channels.

    Returns:
        `(codes, scale, zero)` in the format described in the module docstring (zero is None for int8).
    """
    check_quant_args(x.shape[-1], bits, group)
    g = _grouped(x.to(torch.float32), group)
    if bits == 8:
        scale = g.abs().amax(dim=-1) / 127.0
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        codes = torch.round(g / safe[..., None]).clamp_(-127, 127).to(torch.int8)
        return codes.reshape(x.shape), scale, None
    lo = g.amin(dim=-1)
    scale = (g.amax(dim=-1) - lo) / 15.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round((g - lo[..., None]) / safe[..., None]).clamp_(0, 15).to(torch.uint8)
    return pack_int4(codes.reshape(x.shape)), scale, lo


def dequantize_ref(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int, group: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of `quantize_ref`: codes (+ scale, zero) -> `[..., D]` in `dtype` (math in float32)."""
    d = codes.shape[-1] * (2 if bits == 4 else 1)
    check_quant_args(d, bits, group)
    if bits == 8:
        g = _grouped(codes.to(torch.float32), group) * scale[..., None]
    else:
        if zero is None:
            raise ValueError("int4 dequantization needs the zero points")
        g = _grouped(unpack_int4(codes).to(torch.float32), group) * scale[..., None] + zero[..., None]
    return g.reshape(*codes.shape[:-1], d).to(dtype)


def quantize(x: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Public quantizer, same contract as `quantize_ref`; Triton when `kernels.backends` says so."""
    from reverie.kernels.backends import use_triton_for

    if use_triton_for(x):
        from reverie.kernels.fused.quant import quantize_triton

        return quantize_triton(x, bits, group)
    return quantize_ref(x, bits, group)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int, group: int,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Public dequantizer, same contract as `dequantize_ref`; Triton when `kernels.backends` says so."""
    from reverie.kernels.backends import use_triton_for

    if use_triton_for(codes):
        from reverie.kernels.fused.quant import dequantize_triton

        return dequantize_triton(codes, scale, zero, bits, group, dtype)
    return dequantize_ref(codes, scale, zero, bits, group, dtype)
