"""What attention reads: a read-only view of cached keys/values plus the current chunk.

`memory` builds these views; `kernels.attend(q, view)` consumes them. Keys are stored *before* temporal
RoPE, so the temporal position of every slot is data (`pos`) and rotation happens at read time, which makes
every position policy (absolute, sink re-alignment, packed, window-relative) a pure function of metadata.

Shapes (one session, no batch dimension): `H` heads, `D` head dim, `S` slots in a segment, `Nq` queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class RopeSpec:
    """Temporal rotary embedding applied at read time.

    The first `dims` channels of every head carry temporal RoPE (`dims` even, 0 disables it). Channel `j`
    and channel `j + dims // 2` form a pair rotated by angle `pos * theta ** (-2 j / dims)` (half-split
    layout). Other channels (e.g. spatial RoPE, applied by the model before caching) pass through.
    """

    dims: int
    theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.dims < 0 or self.dims % 2:
            raise ValueError(f"RopeSpec.dims must be a non-negative even number, got {self.dims}")


@dataclass(frozen=True, slots=True)
class KVSegment:
    """One store of keys/values that the queries attend to.

    Attributes:
        k, v: `[H, S, D]` floating point (pre-RoPE keys), or quantized codes: `bits == 8` gives int8
            `[H, S, D]`; `bits == 4` gives uint8 `[H, S, D // 2]` with two codes per byte (low nibble =
            even channel).
        pos: `[S]` int32/int64 temporal position of each slot, used for RoPE at read.
        index: optional `[N]` int64 slot indices: only these slots are visible (gather); None = all `S`.
        bias: optional `[S]` or `[H, S]` float32 additive logit bias per slot (e.g. `log(count)` of a
            merged token, `-inf` to hide a slot from a head).
        k_scale, k_zero, v_scale, v_zero: `[H, S, D // group]` float scales / zero points of quantized
            tiers (zero is None for symmetric int8).
        bits: 0 for floating point, else 8 or 4.
        group: channels per quantization group (divides D).
    """

    k: torch.Tensor
    v: torch.Tensor
    pos: torch.Tensor
    index: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    k_scale: torch.Tensor | None = None
    k_zero: torch.Tensor | None = None
    v_scale: torch.Tensor | None = None
    v_zero: torch.Tensor | None = None
    bits: int = 0
    group: int = 0

    @property
    def visible(self) -> int:
        """Number of visible slots (a Python int taken from shapes, never a device sync)."""
        return int(self.index.shape[0]) if self.index is not None else int(self.pos.shape[0])


@dataclass(frozen=True, slots=True)
class KVView:
    """Everything one attention call reads: segments (cache tiers, then the scratch chunk) and positions.

    Attributes:
        segments: cached tiers and, last by convention, the current chunk's own keys/values (scratch).
        q_pos: `[Nq]` temporal positions of the queries.
        rope: the read-time temporal RoPE.
    """

    segments: tuple[KVSegment, ...]
    q_pos: torch.Tensor
    rope: RopeSpec

    @property
    def visible(self) -> int:
        return sum(s.visible for s in self.segments)
