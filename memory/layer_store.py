"""`LayerStore`: the regions of one layer, and how they become the segments of a `KVView`.

View order: sink, mid, spill, retrieved, recent (the scratch chunk is appended by the manager). The
recent segment also holds the frames that left the ring and wait, in the manager's staging rows right
after the ring's slots, for the next demotion batch (`PolicyConfig.demote_every`). Each
segment's positions come from the position policy; merged tiers carry a `log(count)` bias; head groups
(Forcing-KV) hide slots from static heads with `-inf`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reverie.kernels.view import KVSegment
from reverie.memory.ann import CentroidIndex, LshIndex
from reverie.memory.ann_rest import FrameMeans
from reverie.memory.layout import Layout, quant_group
from reverie.memory.token_pool import TokenPool
from reverie.memory.token_pool_stack import PoolStack
from reverie.memory.frame_ring import FrameRing, RingStack
from reverie.memory.tokens import Tokens


@dataclass
class LayerStore:
    """The regions of one layer (None where the policy has no such region)."""

    recent: FrameRing
    sink: FrameRing | None = None
    mid: TokenPool | None = None
    spill: TokenPool | None = None
    retrieved: FrameRing | None = None
    stage: Tokens | None = None  # this layer's staging rows (`[H, n, D]`, metadata `[n]`); pending frames first
    pending_frames: int = 0  # frames of `stage` waiting for the next demotion batch
    recent_block: tuple[torch.Tensor, torch.Tensor] | None = None  # k, v: the ring's slots, then `stage`'s rows
    segments: tuple[KVSegment, ...] | None = None  # cached for the current chunk
    ann: LshIndex | CentroidIndex | None = None  # codes of the recent ring's slots or frames (`memory.ann`), when the policy has one
    means: FrameMeans | None = None  # the ring frames' mean keys and values (`memory.ann_rest`), with `ann_rest_tokens`


def new_stores(spec, layout: Layout, device,
               stack_mid: bool) -> tuple[list[LayerStore], PoolStack | None, RingStack | None]:
    """Every layer's store, plus the stacks some regions live on: with `stack_mid` (a full-precision mid
    pool without spill tier or merging) the mid pools share one `PoolStack`, so commits compact all layers
    in a batch; the retrieved regions always share one `RingStack`, so retrieval loads all layers at once."""
    stores = [new_store(spec, layout, device, with_mid=not stack_mid, with_retrieved=False)
              for _ in range(spec.layers)]
    geo = dict(layers=spec.layers, heads=spec.heads, head_dim=spec.head_dim, dtype=spec.kv_dtype, device=device)
    mids = PoolStack(capacity=layout.mid_tokens, merged=layout.merged, **geo) if stack_mid else None
    retrieved = (RingStack(capacity=layout.retrieved_frames, tokens_per_frame=spec.tokens_per_frame, **geo)
                 if layout.retrieved_frames else None)
    for i, store in enumerate(stores):
        if mids is not None:
            store.mid = mids.pools[i]
        if retrieved is not None:
            store.retrieved = retrieved.rings[i]
    return stores, mids, retrieved


def new_store(spec, layout: Layout, device, with_mid: bool = True, with_retrieved: bool = True) -> LayerStore:
    """Allocate one layer's regions for `layout` (all buffers preallocated here; the mid pool only
    `with_mid`, the retrieved region only `with_retrieved`)."""
    lay, s = layout, spec
    geo = dict(heads=s.heads, head_dim=s.head_dim, tokens_per_frame=s.tokens_per_frame, dtype=s.kv_dtype,
               device=device)
    mode = "grow" if lay.recent_grows else ("ring" if lay.evicts else "bounded")
    store = LayerStore(recent=FrameRing(capacity=lay.recent_frames, mode=mode, **geo))
    if lay.sink_frames:
        store.sink = FrameRing(capacity=lay.sink_frames, mode="fill", **geo)
    if lay.retrieved_frames and with_retrieved:
        store.retrieved = FrameRing(capacity=lay.retrieved_frames, mode="fill", **geo)
    pool_geo = dict(heads=s.heads, head_dim=s.head_dim, dtype=s.kv_dtype, device=device,
                    group=quant_group(s.head_dim), merged=lay.merged)
    if lay.mid_tokens and with_mid:
        store.mid = TokenPool(capacity=lay.mid_tokens, bits=lay.mid_bits, **pool_geo)
    if lay.spill_tokens:
        store.spill = TokenPool(capacity=lay.spill_tokens, bits=lay.spill_bits, **pool_geo)
    return store


def build_segments(store: LayerStore, layer: int, clock, pp, heads, device, shared: dict) -> tuple[KVSegment, ...]:
    """The cached part of `layer`'s view at `clock` under position policy `pp`.

    `shared` caches, for one chunk, the positions of the frame-granular regions (sink, retrieved,
    recent), which hold the same frames in the same slots in every layer before that layer's commit, and
    may hold `mid` `[L, used]`: every layer's pool positions at once (stacked pools).
    """
    f = store.recent.f
    tail = []  # (region, segment) of the pools and the ring, the sink's placement may depend on them
    pools = [(name, pool) for name, pool in (("mid", store.mid), ("spill", store.spill))
             if pool is not None and pool.used]
    lo = None
    if pp.pools_need_lo and pools and not all(name in shared for name, _ in pools):
        lo = _lowest([_held_min(pool, pool.frame[:pool.used]) for _, pool in pools])
    for name, pool in pools:
        pos = shared[name][layer] if name in shared else pp.tail(pool.frame[:pool.used], clock, "pool", lo)
        tail.append((name, pool.segment(pos, pool.bias())))
    retrieved = None
    if store.retrieved is not None and store.retrieved.frames:
        if "retrieved" not in shared:
            shared["retrieved"] = frame_positions(pp.retrieved(clock), store.retrieved, f, device)
        retrieved = store.retrieved.segment(shared["retrieved"])
    if store.recent.frames:
        if "recent" not in shared:  # the same frames in every layer (the ring's, then the pending ones)
            shared["recent"] = pp.tail(_recent_frame_ids(store), clock, "recent")
        tail.append(("recent", _recent_segment(store, shared["recent"])))
    segs = []
    if store.sink is not None and store.sink.frames:
        segs.append(store.sink.segment(_sink_positions(store, clock, pp, tail, f, device, shared)))
    segs += [seg for name, seg in tail if name in ("mid", "spill")]
    if retrieved is not None:
        segs.append(retrieved)
    segs += [seg for name, seg in tail if name == "recent"]
    if heads is None or not heads.ready:
        return tuple(segs)
    names = segment_names(store)
    ring = store.recent
    anchor = ring.row() if ring.frames else None
    keep = {"recent": range(anchor * f, (anchor + 1) * f) if anchor is not None else None}
    return tuple(heads.hide(layer, s, name, keep.get(name)) for s, name in zip(segs, names))


def _sink_positions(store: LayerStore, clock, pp, tail: list, f: int, device, shared: dict) -> torch.Tensor:
    """The sink's token positions: shared by every layer, unless the policy places the sink below the
    lowest position this layer's tail holds (`sink_follows_tail`; pools keep different tokens per layer)."""
    if tail and pp.sink_follows_tail:
        lows = [seg.pos.min() if name == "recent" else _held_min(getattr(store, name), seg.pos) for name, seg in tail]
        return frame_positions(pp.sink_below(clock, _lowest(lows)), store.sink, f, device)
    if "sink" not in shared:
        shared["sink"] = frame_positions(pp.sink(clock), store.sink, f, device)
    return shared["sink"]


def stacked_pool_positions(stack, clock, pp) -> torch.Tensor:
    """`[L, used]` positions of every layer's stacked mid pool at once (stacked pools are never merged and
    have no spill tier, so every used entry is held and each layer's oldest frame is its row minimum)."""
    frames = stack.frame[:, :stack.used]
    return pp.tail(frames, clock, "pool", frames.amin(dim=1, keepdim=True) if pp.pools_need_lo else None)


def _held_min(pool, values: torch.Tensor) -> torch.Tensor:
    """The smallest of `values` (`[used]`, one per pool entry) over the entries the pool really holds:
    merged-away entries (`-inf` score) do not count. A 0-d device tensor."""
    held = torch.isfinite(pool.score[:pool.used])
    return torch.where(held, values, torch.full_like(values, torch.iinfo(values.dtype).max)).min()


def _lowest(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).min() if len(values) > 1 else values[0]


def slot_tokens(store: LayerStore) -> torch.Tensor:
    """`[S]` int64 token ids (`frame * tokens_per_frame + index`) of the store's slots in view order."""
    f = store.recent.f
    ids = []
    for name in segment_names(store):
        if name in ("mid", "spill"):
            pool = getattr(store, name)
            n = pool.used
            tok = pool.frame[:n] * f + pool.hw[:n]
            ids.append(torch.where(torch.isfinite(pool.score[:n]), tok, torch.full_like(tok, -1)))
        else:
            ring = getattr(store, name)
            frames = _recent_frame_ids(store) if name == "recent" else ring.frame[:ring.slots_used]
            ids.append(frames * f + torch.arange(len(frames), device=frames.device) % f)
    return torch.cat(ids) if ids else torch.zeros(0, dtype=torch.int64, device=store.recent.frame.device)


def _recent_frame_ids(store: LayerStore) -> torch.Tensor:
    """Frame id of every slot of the recent segment: the ring's slots, then the pending frames' rows
    (pending frames exist only while the ring is full)."""
    ring = store.recent
    ids = ring.frame[:ring.slots_used]
    if not store.pending_frames:
        return ids
    return torch.cat((ids, store.stage.frame[:store.pending_frames * ring.f]))


def _recent_segment(store: LayerStore, pos: torch.Tensor) -> KVSegment:
    """The recent ring and, after its slots, the frames waiting for a demotion batch: one contiguous
    segment when they share a buffer (`recent_block`), else the ring alone."""
    if not store.pending_frames:
        return store.recent.segment(pos)
    k, v = store.recent_block
    n = pos.shape[0]
    return KVSegment(k=k[:, :n], v=v[:, :n], pos=pos)


def frame_positions(per_frame, ring: FrameRing, f: int, device) -> torch.Tensor:
    """Token positions of a frame-granular region whose held frames got `per_frame` (a list or an int64
    tensor, oldest first)."""
    n = len(per_frame)
    values = per_frame if isinstance(per_frame, torch.Tensor) else torch.tensor(per_frame, dtype=torch.int64)
    first = (ring.written - n) % ring.capacity  # the slot of the oldest held frame; slots follow frame order
    if first:  # a wrapped ring: frame i sits in slot (first + i) % capacity
        values = values.roll(first)
    return values.repeat_interleave(f).to(device)


def segment_names(store: LayerStore) -> list[str]:
    """Region names of the non-empty segments, in view order."""
    names = []
    if store.sink is not None and store.sink.frames:
        names.append("sink")
    names += [n for n, p in (("mid", store.mid), ("spill", store.spill)) if p is not None and p.used]
    if store.retrieved is not None and store.retrieved.frames:
        names.append("retrieved")
    if store.recent.frames:
        names.append("recent")
    return names
