"""Triton kernels for commit-time scores (oracles in `kernels.scores`).

* `_participation`: one program per (head, tile of keys): loads the head's summed recent query (rotated
  on the host, `[H, D]` float32), rotates the keys at read (temporal RoPE, half-split pairs) and writes
  `phi[h, j] = qsum_h . k_j`.
* `_token_cosine`: one program per (frame pair, tile of tokens): streams the heads, accumulating the dot
  product and both squared norms per token, and writes the cosine (over heads flattened, or per head).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from reverie.kernels.fused._jit import lazy_jit
from reverie.kernels.rope import apply_rope_ref
from reverie.kernels.scores import _check_scores_args
from reverie.kernels.view import RopeSpec


@lazy_jit
def _participation(
    QS, K, POS, OUT, n_keys, scale, freq_scale,
    sk_h, sk_s,
    D: tl.constexpr, ROPE_DIMS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    h = tl.program_id(1)
    offs_s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    mask_s = offs_s < n_keys
    mask_d = offs_d < D
    mask = mask_s[:, None] & mask_d[None, :]
    qs = tl.load(QS + h * D + offs_d, mask=mask_d, other=0.0)
    base = K + h * sk_h + offs_s[:, None].to(tl.int64) * sk_s
    k = tl.load(base + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    if ROPE_DIMS > 0:
        half: tl.constexpr = ROPE_DIMS // 2
        rotated = offs_d < ROPE_DIMS
        first_half = offs_d < half
        partner = tl.where(first_half, offs_d + half, tl.where(rotated, offs_d - half, offs_d))
        kp = tl.load(base + partner[None, :], mask=mask, other=0.0).to(tl.float32)
        pair = tl.where(first_half, offs_d, offs_d - half).to(tl.float32)
        pos = tl.load(POS + offs_s, mask=mask_s, other=0).to(tl.float32)
        angle = pos[:, None] * tl.exp2(pair * freq_scale)[None, :]
        cos = tl.where(rotated[None, :], tl.cos(angle), 1.0)
        sin = tl.where(rotated[None, :], tl.sin(angle), 0.0)
        k = k * cos + tl.where(first_half, -1.0, 1.0)[None, :] * kp * sin
    phi = tl.sum(k * qs[None, :], 1) * scale
    tl.store(OUT + h * n_keys + offs_s, phi, mask=mask_s)


def participation_scores_triton(q: torch.Tensor, k: torch.Tensor, *, q_pos: torch.Tensor | None = None,
                                k_pos: torch.Tensor | None = None, rope: RopeSpec | None = None,
                                sum_heads: bool = False, scale: float = 1.0) -> torch.Tensor:
    """Same contract as `kernels.scores.participation_scores_ref`."""
    _check_scores_args(q, k, q_pos, k_pos, rope)
    h, s, d = k.shape
    dims = rope.dims if rope is not None else 0
    qf = q.float()
    if dims:
        qf = apply_rope_ref(qf, q_pos, rope)
    qsum = qf.sum(dim=1).contiguous()
    if k.stride(-1) != 1:
        k = k.contiguous()
    out = torch.empty(h, s, dtype=torch.float32, device=k.device)
    block_s = 64
    freq_scale = -2.0 * math.log2(rope.theta) / dims if dims else 0.0
    pos = k_pos.contiguous() if dims else qsum
    _participation[(triton.cdiv(s, block_s), h)](
        qsum, k, pos, out, s, float(scale), freq_scale, k.stride(0), k.stride(1),
        D=d, ROPE_DIMS=dims, BLOCK_S=block_s, BLOCK_D=triton.next_power_of_2(d),
    )
    return out.sum(dim=0) if sum_heads else out


@lazy_jit
def _token_cosine(
    X, OUT, n_heads, n_tokens, eps,
    sx_h, sx_f, sx_t,
    D: tl.constexpr, PER_HEAD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):
    f = tl.program_id(1)
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.arange(0, BLOCK_D)
    mask_t = offs_t < n_tokens
    mask = mask_t[:, None] & (offs_d < D)[None, :]
    n_pairs = tl.num_programs(1)
    dot = tl.zeros([BLOCK_T], tl.float32)
    na = tl.zeros([BLOCK_T], tl.float32)
    nb = tl.zeros([BLOCK_T], tl.float32)
    for h in range(0, n_heads):
        base = X + h * sx_h + offs_t[:, None].to(tl.int64) * sx_t + offs_d[None, :]
        a = tl.load(base + f * sx_f, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(base + (f + 1) * sx_f, mask=mask, other=0.0).to(tl.float32)
        if PER_HEAD:
            cos = tl.sum(a * b, 1) / tl.maximum(tl.sqrt(tl.sum(a * a, 1)) * tl.sqrt(tl.sum(b * b, 1)), eps)
            tl.store(OUT + (h * n_pairs + f) * n_tokens + offs_t, cos, mask=mask_t)
        else:
            dot += tl.sum(a * b, 1)
            na += tl.sum(a * a, 1)
            nb += tl.sum(b * b, 1)
    if not PER_HEAD:
        tl.store(OUT + f * n_tokens + offs_t, dot / tl.maximum(tl.sqrt(na) * tl.sqrt(nb), eps), mask=mask_t)


def token_cosine_triton(frames: torch.Tensor, *, per_head: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """Same contract as `kernels.scores.token_cosine_ref` (`[H, F, T, D]` -> `[F-1, T]` or `[H, F-1, T]`)."""
    if frames.ndim != 4 or frames.shape[1] < 2:
        raise ValueError(f"frames must be [H, F >= 2, T, D], got {tuple(frames.shape)}")
    if frames.stride(-1) != 1:
        frames = frames.contiguous()
    h, f, t, d = frames.shape
    shape = (h, f - 1, t) if per_head else (f - 1, t)
    out = torch.empty(shape, dtype=torch.float32, device=frames.device)
    block_t = 32
    _token_cosine[(triton.cdiv(t, block_t), f - 1)](
        frames, out, h, t, eps, frames.stride(0), frames.stride(1), frames.stride(2),
        D=d, PER_HEAD=per_head, BLOCK_T=block_t, BLOCK_D=triton.next_power_of_2(d),
    )
    return out
