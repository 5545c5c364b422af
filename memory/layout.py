"""Budget planning: how many frames/tokens each region of a layer may hold, in bytes.

The budget is a hard cap on the bytes of cached keys/values over all layers (quantization scales, zero
points and merge counts included; the current chunk is scratch and never counted). Every layer gets the
same layout, so a layer's share is `budget // layers`. The layout is computed once, when a session is
created; `BudgetError` says what the policy needed when the budget is too small. A session holds more
than its budget (the spatial archive, staging rows, positions, the engine's buffers):
`memory.footprint.session_bytes` prices all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from reverie.memory.ann import ANN_CODE_BYTES, CENTROID_BYTES, content_from
from reverie.memory.ann_rest import FrameMeans, mean_tokens
from reverie.memory.config import PolicyConfig
from reverie.memory.errors import BudgetError

SCALE_BYTES = 4  # float32 quantization scales / zero points (kernels.quant)
COUNT_BYTES = 4  # float32 multiplicity of a merged token


def quant_group(head_dim: int) -> int:
    """Channels per quantization group: 32 when it divides the head dim, else the whole head."""
    return 32 if head_dim % 32 == 0 else head_dim


def token_bytes(heads: int, head_dim: int, itemsize: int, bits: int = 0, merged: bool = False) -> int:
    """Bytes one cached token (K and V, all heads, one layer) takes in a tier.

    Args:
        bits: 0 = full precision (`itemsize` bytes per element), 8 = int8 codes + one scale per group,
            4 = packed int4 codes + a scale and a zero point per group.
        merged: the tier keeps a multiplicity per slot (TempCache merged tokens).
    """
    groups = head_dim // quant_group(head_dim)
    if bits == 0:
        per_tensor = heads * head_dim * itemsize
    elif bits == 8:
        per_tensor = heads * head_dim + heads * groups * SCALE_BYTES
    elif bits == 4:
        per_tensor = heads * head_dim // 2 + 2 * heads * groups * SCALE_BYTES
    else:
        raise ValueError(f"bits must be 0, 8 or 4, got {bits}")
    return 2 * per_tensor + (COUNT_BYTES if merged else 0)


@dataclass(frozen=True, slots=True)
class Layout:
    """Per-layer capacities of every region (the same for all layers).

    Attributes:
        sink_frames, recent_frames, retrieved_frames: frame-granular regions (full precision).
        pending_frames: frames that left `recent` and wait, visible, for the next demotion batch
            (`PolicyConfig.demote_every - 1`, at most an eighth of the budget's frames; held in the
            manager's staging rows). Batches are `pending_frames + 1` frames.
        mid_tokens, spill_tokens: token-granular pools (plus one dump row each, see `TokenPool`).
        recent_grows: the unbounded `full` reference without a horizon (grows by doubling).
        budget_bytes: the cap over all layers (None = unbounded).
        layers: layer count (bytes are per layer times this).
    """

    sink_frames: int
    recent_frames: int
    mid_tokens: int
    mid_bits: int
    spill_tokens: int
    spill_bits: int
    retrieved_frames: int
    merged: bool
    recent_grows: bool
    evicts: bool
    budget_bytes: int | None
    layers: int
    tokens_per_frame: int
    frame_bytes: int  # one full-precision frame, one layer
    mid_token_bytes: int
    spill_token_bytes: int
    pending_frames: int = 0
    index_frame_bytes: int = 0  # the ANN codes (and frame means) of one recent frame, one layer (`memory.ann`)

    @property
    def pool_frames(self) -> int:
        """Frame-equivalents of the mid + spill pools (their span in packed positions)."""
        f = self.tokens_per_frame
        return math.ceil(self.mid_tokens / f) + math.ceil(self.spill_tokens / f)

    def layer_bytes(self) -> int:
        """Bytes allocated per layer at capacity (what the budget check compares)."""
        frames = self.sink_frames + self.recent_frames + self.retrieved_frames + self.pending_frames
        pools = (self.mid_tokens + 1 if self.mid_tokens else 0) * self.mid_token_bytes
        pools += (self.spill_tokens + 1 if self.spill_tokens else 0) * self.spill_token_bytes
        return frames * self.frame_bytes + pools + self.recent_frames * self.index_frame_bytes


def plan_layout(spec, cfg: PolicyConfig, budget_bytes: int | None, horizon_frames: int | None) -> Layout:
    """Split a byte budget into region capacities for `cfg` on a model with geometry `spec`.

    Raises:
        BudgetError: the budget cannot hold the policy's fixed regions plus one chunk of recent frames.
    """
    itemsize = torch.empty((), dtype=spec.kv_dtype).element_size()
    h, d, f, c, n_layers = spec.heads, spec.head_dim, spec.tokens_per_frame, spec.chunk_frames, spec.layers
    frame_b = f * token_bytes(h, d, itemsize)
    merged = cfg.merge_threshold is not None
    mid_tb = token_bytes(h, d, itemsize, cfg.mid_bits, merged)
    spill_tb = token_bytes(h, d, itemsize, cfg.spill_bits, merged)
    if cfg.ann_index == "centroid":  # a frame's centroid per head, over its content channels
        code_b = h * (d - content_from(spec)) * CENTROID_BYTES
    else:
        code_b = f * h * cfg.ann_tables * ANN_CODE_BYTES if cfg.ann_bits else 0
    if cfg.indexed and mean_tokens(cfg.ann_rest_tokens, f):  # each frame's group means (`memory.ann_rest`)
        code_b += FrameMeans.frame_bytes(h, d, mean_tokens(cfg.ann_rest_tokens, f), spec.kv_dtype)
    common = dict(layers=n_layers, tokens_per_frame=f, frame_bytes=frame_b, mid_bits=cfg.mid_bits,
                  spill_bits=cfg.spill_bits, merged=merged, mid_token_bytes=mid_tb, spill_token_bytes=spill_tb,
                  index_frame_bytes=code_b)
    if cfg.unbounded:
        return _plan_unbounded(spec, budget_bytes, horizon_frames, frame_b, common)
    if budget_bytes is None:
        raise BudgetError(f"policy '{cfg.name}' needs a budget (budget_bytes, or budget_frac with horizon_frames)")
    per_layer = budget_bytes // n_layers
    budget_frames = per_layer / frame_b
    sink = max(cfg.sink_frames, int(cfg.sink_frac * budget_frames))
    retrieved = min(cfg.retrieved_frames, int(0.25 * budget_frames))  # retrieval never takes > 1/4
    recent_min = min(c, cfg.recent_frames) if cfg.recent_frames is not None else c
    recent_fixed = cfg.recent_frames if cfg.recent_frames is not None else recent_min
    pending = min(cfg.demote_every - 1, int(0.125 * budget_frames))  # batches never wait in > 1/8 of it
    need = (sink + retrieved + recent_fixed + pending) * frame_b + recent_fixed * code_b
    if per_layer < need:
        raise BudgetError(
            f"policy '{cfg.name}' cannot fit a budget of {budget_bytes:,} bytes ({per_layer:,} per layer x "
            f"{n_layers} layers = {budget_frames:.2f} frames of {frame_b:,} bytes): it needs at least "
            f"{need * n_layers:,} bytes for {sink} sink + {recent_fixed} recent"
            + (f" + {retrieved} retrieved" if retrieved else "")
            + (f" + {pending} pending" if pending else "")
            + f" frames ({need / frame_b:.0f} frames; one chunk = {c} frames)"
        )
    free = per_layer - need
    mid_bytes = int(cfg.mid_frac * free)
    spill_bytes = int(cfg.spill_frac * mid_bytes)
    mid_bytes -= spill_bytes
    mid_tokens = max(mid_bytes // mid_tb - 1, 0) if cfg.mid_frac else 0
    spill_tokens = max(spill_bytes // spill_tb - 1, 0) if cfg.spill_frac else 0
    used_pools = (mid_tokens + 1 if mid_tokens else 0) * mid_tb + (spill_tokens + 1 if spill_tokens else 0) * spill_tb
    recent = recent_fixed if cfg.recent_frames is not None else recent_min + (free - used_pools) // (frame_b + code_b)
    return Layout(sink_frames=sink, recent_frames=recent, mid_tokens=mid_tokens, spill_tokens=spill_tokens,
                  retrieved_frames=retrieved, recent_grows=False, evicts=True, budget_bytes=budget_bytes,
                  pending_frames=pending, **common)


def _plan_unbounded(spec, budget_bytes, horizon_frames, frame_b, common) -> Layout:
    n_layers, c = spec.layers, spec.chunk_frames
    if budget_bytes is None:
        frames, grows = (max(horizon_frames, c), True) if horizon_frames else (max(c, 16), True)
    else:
        frames, grows = budget_bytes // n_layers // frame_b, False
        if frames < c:
            raise BudgetError(
                f"policy 'full' keeps every frame: a budget of {budget_bytes:,} bytes holds {frames} frames "
                f"({frame_b * n_layers:,} bytes each), less than one chunk ({c} frames)")
    return Layout(sink_frames=0, recent_frames=frames, mid_tokens=0, spill_tokens=0, retrieved_frames=0,
                  recent_grows=grows, evicts=False, budget_bytes=budget_bytes, **common)


DEFAULT_BUDGET_FRAMES = 32  # budget of a managed policy created without one: 32 frames of full cache


def resolve_budget(spec, cfg: PolicyConfig, budget_bytes, budget_frac, horizon_frames) -> int | None:
    """The byte budget implied by the arguments (None = unbounded `full`)."""
    if budget_bytes is not None and budget_frac is not None:
        raise BudgetError("give budget_bytes or budget_frac, not both")
    if horizon_frames is not None and horizon_frames < 1:
        raise BudgetError(f"horizon_frames must be >= 1, got {horizon_frames}")
    if budget_frac is not None:
        if not 0.0 < budget_frac <= 1.0:
            raise BudgetError(f"budget_frac must be in (0, 1], got {budget_frac}")
        if horizon_frames is None:
            raise BudgetError("budget_frac is a fraction of the full cache at horizon_frames; give horizon_frames")
        return int(math.floor(budget_frac * horizon_frames * spec.kv_bytes_per_frame))
    if budget_bytes is not None:
        if budget_bytes <= 0:
            raise BudgetError(f"budget_bytes must be positive, got {budget_bytes}")
        return int(budget_bytes)
    if cfg.unbounded:
        return None
    return DEFAULT_BUDGET_FRAMES * spec.kv_bytes_per_frame
