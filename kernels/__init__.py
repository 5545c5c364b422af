"""Attention over what `memory` exposes: gathered slots, per-slot logit bias, quantized tiers, RoPE at read.

Entry point: `attend(q [H, Nq, D], view) -> [H, Nq, D]` (`kernels.attend`), on the backend chosen by
`kernels.backends` (`flash-attn` for dense float spans on CUDA where installed, else `torch`; the fused
`triton` kernel when asked for; override with `REVERIE_ATTN_BACKEND` or `with attention_backend(name):`). Commit-time helpers, each dispatching to
Triton on CUDA and to its torch `*_ref` elsewhere: `kernels.scores.participation_scores`,
`kernels.scores.segment_similarity`, `kernels.quant.quantize` / `dequantize`. Read-time RoPE:
`kernels.rope.apply_rope_ref` (differentiable), `rope_tables` + `apply_rope` (inference). View builders
for tests and benches: `kernels.testing`.

Importing this package is light (torch only); `triton` and `flash_attn` are imported when a backend that
needs them first runs.
"""

from reverie.kernels.attend import attend, attend_ref
from reverie.kernels.backends import BackendError, attention_backend
from reverie.kernels.view import KVSegment, KVView, RopeSpec

__all__ = ["attend", "attend_ref", "attention_backend", "BackendError", "KVSegment", "KVView", "RopeSpec"]
