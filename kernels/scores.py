"""Commit-time scores that memory policies rank slots by.

* `participation_scores`: Deep Forcing's participative compression score. For keys `k_j` and recent
  queries `q_r` of one head, `phi_j = sum_r q_r . k_j = (sum_r q_r) . k_j` (linear in q, so one mat-vec per
  head, never an attention map). Optional temporal RoPE at read on both sides, optional sum over heads.
* `segment_similarity`: Forcing-KV's change score. Each frame's `T` tokens are split into `n` contiguous
  segments; for consecutive frames `t, t+1` and segment `j`, the score is the mean over the segment's
  tokens of the token-wise cosine between the two frames' keys (keys flattened over heads, or per head).
  Low similarity = a changing region worth keeping.

`*_ref` are the pure-torch oracles; the unsuffixed functions dispatch to Triton on CUDA (see
`kernels.backends.use_triton_for`) and to the references elsewhere.
"""

from __future__ import annotations

import torch

from reverie.kernels.rope import apply_rope_ref
from reverie.kernels.view import RopeSpec


def participation_scores_ref(q: torch.Tensor, k: torch.Tensor, *, q_pos: torch.Tensor | None = None,
                             k_pos: torch.Tensor | None = None, rope: RopeSpec | None = None,
                             sum_heads: bool = False, scale: float = 1.0) -> torch.Tensor:
    """Summed-recent-query . key scores.

    Args:
        q: `[H, R, D]` recent queries (clean past queries and/or the current chunk's), pre-RoPE.
        k: `[H, S, D]` candidate keys, pre-RoPE.
        q_pos, k_pos, rope: when `rope` is given, both sides are rotated at their positions first.
        sum_heads: add the per-head scores (Deep Forcing's port also scales by `1 / (sqrt(D) H)`: pass it
            as `scale`).
        scale: multiplies every score.

    Returns:
        float32 `[H, S]` (or `[S]` when `sum_heads`).
    """
    _check_scores_args(q, k, q_pos, k_pos, rope)
    qf, kf = q.float(), k.float()
    if rope is not None and rope.dims:
        qf, kf = apply_rope_ref(qf, q_pos, rope), apply_rope_ref(kf, k_pos, rope)
    phi = torch.einsum("hd,hsd->hs", qf.sum(dim=1), kf) * scale
    return phi.sum(dim=0) if sum_heads else phi


def participation_scores(q: torch.Tensor, k: torch.Tensor, **kw) -> torch.Tensor:
    """Same contract as `participation_scores_ref`; the Triton kernel when `use_triton_for(k)`."""
    from reverie.kernels.backends import use_triton_for

    if use_triton_for(k):
        from reverie.kernels.fused.scores import participation_scores_triton

        return participation_scores_triton(q, k, **kw)
    return participation_scores_ref(q, k, **kw)


def segment_bounds(tokens: int, segments: int) -> list[int]:
    """Boundaries of `segments` contiguous segments over `tokens` (segment j = [b[j], b[j+1]))."""
    if not 0 < segments <= tokens:
        raise ValueError(f"cannot split {tokens} tokens into {segments} segments")
    return [j * tokens // segments for j in range(segments + 1)]


def token_cosine_ref(frames: torch.Tensor, *, per_head: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """Token-wise cosine between consecutive frames' keys.

    Args:
        frames: `[H, F, T, D]` keys of `F` consecutive frames of `T` tokens.
        per_head: cosine per head instead of over the keys flattened across heads.

    Returns:
        float32 `[F - 1, T]` (or `[H, F - 1, T]` when `per_head`).
    """
    if frames.ndim != 4 or frames.shape[1] < 2:
        raise ValueError(f"frames must be [H, F >= 2, T, D], got {tuple(frames.shape)}")
    x = frames.float()
    a, b = x[:, :-1], x[:, 1:]
    dot, na, nb = (a * b).sum(-1), (a * a).sum(-1), (b * b).sum(-1)
    if not per_head:
        dot, na, nb = dot.sum(0), na.sum(0), nb.sum(0)
    return dot / (na.sqrt() * nb.sqrt()).clamp_min(eps)


def segment_means(token_scores: torch.Tensor, segments: int) -> torch.Tensor:
    """`[..., T]` -> `[..., segments]`: mean over each contiguous segment (see `segment_bounds`)."""
    t = token_scores.shape[-1]
    b = segment_bounds(t, segments)
    if t % segments == 0:
        return token_scores.reshape(*token_scores.shape[:-1], segments, t // segments).mean(-1)
    return torch.stack([token_scores[..., b[j]:b[j + 1]].mean(-1) for j in range(segments)], dim=-1)


def segment_similarity_ref(frames: torch.Tensor, segments: int, *, per_head: bool = False) -> torch.Tensor:
    """Forcing-KV segment similarity between consecutive frames.

    Args:
        frames: `[H, F, T, D]` keys of `F` consecutive frames (raster token order; pass only the heads
            that should count, e.g. the dynamic ones).
        segments: `n`, contiguous segments per frame.
        per_head: one score per head instead of keys flattened over heads.

    Returns:
        float32 `[F - 1, n]` (or `[H, F - 1, n]`): entry `[t, j]` compares frame `t` and `t + 1`.
    """
    segment_bounds(frames.shape[-2], segments)
    return segment_means(token_cosine_ref(frames, per_head=per_head), segments)


def segment_similarity(frames: torch.Tensor, segments: int, *, per_head: bool = False) -> torch.Tensor:
    """Same contract as `segment_similarity_ref`; the Triton token-cosine kernel when `use_triton_for`."""
    from reverie.kernels.backends import use_triton_for

    if use_triton_for(frames):
        from reverie.kernels.fused.scores import token_cosine_triton

        segment_bounds(frames.shape[-2], segments)
        return segment_means(token_cosine_triton(frames, per_head=per_head), segments)
    return segment_similarity_ref(frames, segments, per_head=per_head)


def _check_scores_args(q, k, q_pos, k_pos, rope) -> None:
    if q.ndim != 3 or k.ndim != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"q must be [H, R, D] and k [H, S, D], got {tuple(q.shape)} and {tuple(k.shape)}")
    if rope is not None and rope.dims:
        if q_pos is None or k_pos is None:
            raise ValueError("RoPE at read needs q_pos and k_pos")
        if q_pos.shape != (q.shape[1],) or k_pos.shape != (k.shape[1],):
            raise ValueError(f"q_pos must be [R]={q.shape[1]} and k_pos [S]={k.shape[1]}")
