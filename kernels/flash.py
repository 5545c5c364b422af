"""flash-attn backend: dense float spans on CUDA (no gather, no bias, no quantized tiers).

Keys are rotated at their positions in torch (one rotated copy per segment), each segment is one
`flash_attn_func` call returning its log-sum-exp, and the per-segment outputs are merged exactly:
`out = sum_s exp(lse_s - lse) out_s` with `lse = logsumexp_s lse_s`. Values are read in place.
"""

from __future__ import annotations

import torch

from reverie.kernels.attend import check_view
from reverie.kernels.rope import apply_rope, rope_tables
from reverie.kernels.view import KVView


def attend_flash(q: torch.Tensor, view: KVView) -> torch.Tensor:
    """Same contract as `kernels.attend.attend`; `q` fp16/bf16 on CUDA, float segments only."""
    from flash_attn import flash_attn_func

    check_view(q, view)
    spec = view.rope
    qr = q
    if spec.dims:
        cos, sin = rope_tables(view.q_pos, spec)
        qr = apply_rope(q.float(), cos, sin, spec.dims).to(q.dtype)
    qb = qr.transpose(0, 1).unsqueeze(0)  # [1, Nq, H, D]
    outs, lses = [], []
    for seg in view.segments:
        if not seg.visible:
            continue
        k = seg.k
        if spec.dims:
            cos, sin = rope_tables(seg.pos, spec)
            k = apply_rope(k.float(), cos, sin, spec.dims).to(q.dtype)
        out, lse, _ = flash_attn_func(qb, k.to(q.dtype).transpose(0, 1).unsqueeze(0),
                                      seg.v.to(q.dtype).transpose(0, 1).unsqueeze(0), return_attn_probs=True)
        outs.append(out[0].transpose(0, 1))  # [H, Nq, D]
        lses.append(lse[0, :, : q.shape[1]])  # [H, Nq]
    if len(outs) == 1:
        return outs[0].contiguous()
    lse = torch.stack(lses)  # [n_seg, H, Nq]
    weights = torch.softmax(lse, dim=0)
    merged = sum(w[..., None] * o.float() for w, o in zip(weights, outs))
    return merged.to(q.dtype)
