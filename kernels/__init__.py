"""Attention over what `memory` exposes: gathered slots, per-slot logit bias, quantized tiers, RoPE at read.

`from kernels import attend` is the entry point (`attend(q [H, Nq, D], view) -> [H, Nq, D]`). Importing this
package is light: torch only; `triton` and `flash_attn` are imported when a backend that needs them first
runs (see `kernels.backends`). Commit-time helpers: `kernels.scores` (participation scores, segment
similarity) and `kernels.quant` (int8/int4 quantize/dequantize). Every op has a pure-torch `*_ref` oracle.
"""

from kernels.attend import attend, attend_ref
from kernels.backends import BackendError, attention_backend
from kernels.view import KVSegment, KVView, RopeSpec

__all__ = ["attend", "attend_ref", "attention_backend", "BackendError", "KVSegment", "KVView", "RopeSpec"]
