"""`MemoryManager`: one session's KV cache under a fixed byte budget.

Per layer a `LayerStore` holds the regions of the memory design: `sink` (first frames, kept), `recent`
(FIFO of the newest frames), `mid` (a score-selected token pool, full precision / int8 / int4 / merged),
`spill` (a low-bit pool for what `mid` evicts) and `retrieved` (frames pulled back from the pose-indexed
host archive). Which regions exist and how they are scored and positioned is the policy
(`memory.policies`); this class is the same for all of them. Its parts live beside it: the regions in
`memory.layer_store` (`frame_ring`, `token_pool`, `token_pool_stack`), what happens to frames leaving
`recent` in `memory.demotion`, bytes and stats in `memory.accounting`, section timers in `memory.timing`.

Loop contract (the model/engine side):

    mem.begin_chunk(pose, events)          # once per chunk: events, retrieval, positions for the chunk
    view = mem.view(layer, q, k, v)        # every denoising step, every layer (read-only)
    mem.commit(layer, k, v, q)             # commit pass only, after attending
    mem.end_chunk()                        # advances the frame clock

No host syncs happen in `view`/`commit`: occupancy and the frame clock are Python ints.
"""

from __future__ import annotations

import torch

from reverie.kernels.view import KVSegment, KVView
from reverie.memory import accounting
from reverie.memory.ann import CentroidIndex, LshIndex, content_from, restrict_recent
from reverie.memory.ann_rest import FrameMeans, mean_tokens
from reverie.memory.config import PolicyConfig
from reverie.memory.demotion import Demotion
from reverie.memory.errors import BudgetError
from reverie.memory.events import CUT_GAP_FRAMES, as_event
from reverie.memory.frame_ring import FrameRing
from reverie.memory.footprint import default_policy, session_buffer_bytes
from reverie.memory.heads import MIN_HISTORY_FRAMES, HeadGroups
from reverie.memory.layer_store import (LayerStore, build_segments, new_stores, segment_names, slot_tokens,
                                        stacked_pool_positions)
from reverie.memory.layout import Layout, plan_layout, resolve_budget
from reverie.memory.merge import TokenMerger
from reverie.memory.no_cache import NoCache, check_no_cache
from reverie.memory.policies import resolve
from reverie.memory.positions import Clock, make_position_policy
from reverie.memory.scorers import make_scorer
from reverie.memory.spatial import FrameArchive
from reverie.memory.timing import SectionTimer
from reverie.memory.tokens import Tokens


class MemoryManager:
    """A session's memory. Build it with `MemoryManager.create(spec, policy=..., ...)`."""

    def __init__(self, spec, cfg: PolicyConfig, layout: Layout, device="cpu") -> None:
        self.spec, self.cfg, self.layout = spec, cfg, layout
        self.device = torch.device(device)
        self.positions = make_position_policy(cfg.positions)
        self.scorer = make_scorer(cfg.scorer, cfg, spec, self.device)
        # the layout's frames, or the model's trained span when larger: true distances as far as it knows them
        self.span = cfg.position_span or max(layout.sink_frames + layout.pool_frames + layout.retrieved_frames
                                             + layout.recent_frames + spec.chunk_frames,
                                             spec.temporal_span or 0)
        if self.span <= spec.chunk_frames:
            raise BudgetError(f"position_span={self.span} leaves no positions for the cache (chunk = {spec.chunk_frames})")
        limit = cfg.rope_limit
        if limit is not None and self.positions.bounded and self.span > limit:
            raise BudgetError(f"policy '{cfg.name}' spans {self.span} temporal positions, more than rope_limit={limit}")
        # a full-precision mid pool without spill tier or merging: all layers' pools on one stack, and the
        # frames leaving `recent` are archived, scored and compacted for every layer in one batch
        stack_mid = bool(layout.mid_tokens) and not layout.mid_bits and not layout.spill_tokens and not layout.merged
        self.layers, self.stack, self.retrieved = new_stores(spec, layout, self.device, stack_mid)
        if cfg.ann_index == "centroid":
            for store in self.layers:
                store.ann = CentroidIndex(heads=spec.heads, head_dim=spec.head_dim, frames=store.recent.capacity,
                                          tokens_per_frame=spec.tokens_per_frame, content_from=content_from(spec),
                                          device=self.device)
        elif cfg.ann_bits:
            for store in self.layers:
                store.ann = LshIndex(heads=spec.heads, head_dim=spec.head_dim,
                                     slots=store.recent.capacity * spec.tokens_per_frame,
                                     content_from=content_from(spec),
                                     bits=cfg.ann_bits, tables=cfg.ann_tables, device=self.device)
        if cfg.indexed and mean_tokens(cfg.ann_rest_tokens, spec.tokens_per_frame):
            for store in self.layers:
                store.means = FrameMeans(heads=spec.heads, head_dim=spec.head_dim, frames=store.recent.capacity,
                                         tokens_per_frame=spec.tokens_per_frame, dtype=spec.kv_dtype,
                                         tokens=mean_tokens(cfg.ann_rest_tokens, spec.tokens_per_frame),
                                         device=self.device)
        self.batched = stack_mid or not layout.mid_tokens
        self._stage_all = self._new_staging()
        self._stages = [Tokens(*(t[layer] for t in self._stage_all)) for layer in range(spec.layers)]
        if layout.pending_frames:
            self._share_recent_with_staging()
        for store, stage in zip(self.layers, self._stages):
            store.stage = stage
        self._pending: list[int] = []  # frames that left `recent`, visible in the staging rows until demoted
        # optional features, composed from the policy (None when the policy does not use them)
        self.merger = (TokenMerger(cfg.merge_threshold, spec.layers, spec.tokens_per_frame, self.device)
                       if cfg.merge_threshold is not None and layout.mid_tokens else None)
        self.heads = (HeadGroups(spec, cfg.static_threshold, cfg.profile_chunks, self.device)
                      if cfg.head_groups else None)
        if self.heads is not None and cfg.head_profile:
            self.heads.load(cfg.head_profile)
        self.archive = (FrameArchive(spec, cfg.archive_frames, self.device, cfg.fov_degrees, cfg.retrieval_distance)
                        if cfg.archive_frames else None)
        self.timer = SectionTimer(self.device)
        self.demotion = Demotion(spec.tokens_per_frame, self.scorer, self.merger, self.archive, self.stack,
                                 self.timer)
        self.frames_committed = 0
        self.skipped_frames = 0  # frame ids left out by RoPE cuts: the next frame's id is their sum
        self._retrieved_at: int | None = None  # frame clock of the last retrieval (None: due now)
        self._open = False
        self._committed: set[int] = set()
        self._clock: Clock | None = None
        self._chunk_pos: torch.Tensor | None = None
        self._shared_pos: dict[str, torch.Tensor] = {}  # this chunk's positions of frame regions
        self.events_seen: dict[str, int] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, spec, policy: str | None = None, budget_bytes: int | None = None, budget_frac: float | None = None,
               horizon_frames: int | None = None, device="cpu", **overrides) -> "MemoryManager":
        """Build a session's memory for a model with geometry `spec` (`world.contract.ModelSpec`).

        Args:
            policy: a name from `memory.available_policies()` (default: `default_policy(spec)`, `dual`; a
                model without an attention cache gets a `memory.no_cache.NoCache`, policy `none`).
            budget_bytes: hard cap on cached K/V bytes over all layers (quantization scales included).
            budget_frac: alternatively, a fraction of the full cache at `horizon_frames`
                (`budget_frac * horizon_frames * spec.kv_bytes_per_frame`).
            horizon_frames: session length the budget fraction refers to; `full` preallocates to it.
            device: where the cache lives.
            **overrides: `PolicyConfig` fields (e.g. `sink_frames=3`, `positions="relative"`).

        Raises:
            BudgetError: the policy cannot fit the budget (or the budget arguments contradict each other).
            UnknownPolicyError: unknown policy name or override.
        """
        policy = default_policy(spec) if policy is None else policy
        check_no_cache(spec, policy)
        if spec.layers == 0:
            return NoCache(spec, budget_bytes, session_buffer_bytes(spec)["frame_context"])
        cfg = resolve(policy, **overrides)
        budget = resolve_budget(spec, cfg, budget_bytes, budget_frac, horizon_frames)
        layout = plan_layout(spec, cfg, budget, horizon_frames)
        return cls(spec, cfg, layout, device)

    def _share_recent_with_staging(self) -> None:
        """Put each layer's recent ring and its staging rows in one buffer `[H, (R + n) * F, D]`, the rows
        right after the ring's slots, so that the ring and the pending frames after it are read as one
        segment (`LayerStore.recent_block`): pending frames exist only once the ring is full."""
        s, lay = self.spec, self.layout
        ring_slots = lay.recent_frames * s.tokens_per_frame
        shape = (s.layers, s.heads, ring_slots + self._stage_all.k.shape[2], s.head_dim)
        block_k = torch.zeros(shape, dtype=s.kv_dtype, device=self.device)
        block_v = torch.zeros_like(block_k)
        self._stage_all = self._stage_all._replace(k=block_k[:, :, ring_slots:], v=block_v[:, :, ring_slots:])
        self._stages = [Tokens(*(t[layer] for t in self._stage_all)) for layer in range(s.layers)]
        for layer, store in enumerate(self.layers):
            old = store.recent
            store.recent = FrameRing(capacity=old.capacity, heads=s.heads, head_dim=s.head_dim,
                                     tokens_per_frame=s.tokens_per_frame, dtype=s.kv_dtype, device=self.device,
                                     mode=old.mode, buffers={"k": block_k[layer, :, :ring_slots],
                                                             "v": block_v[layer, :, :ring_slots], "frame": old.frame})
            store.recent_block = (block_k[layer], block_v[layer])

    def _new_staging(self) -> Tokens:
        """Per-layer rows (`[L, H, n, D]`, metadata `[L, n]`) for the frames a commit pushes out of `recent`:
        the pending frames of the last demotion batch first, then this commit's."""
        s, dev = self.spec, self.device
        frames = s.chunk_frames + self.layout.pending_frames
        n, layers = frames * s.tokens_per_frame, s.layers
        k = torch.zeros(layers, s.heads, n, s.head_dim, dtype=s.kv_dtype, device=dev)
        hw = torch.arange(s.tokens_per_frame, device=dev).repeat(frames).repeat(layers, 1)
        return Tokens(k, torch.zeros_like(k), torch.zeros(layers, n, dtype=torch.int64, device=dev), hw,
                      torch.zeros(layers, n, device=dev), torch.ones(layers, n, device=dev))

    # ------------------------------------------------------------------ the loop
    def begin_chunk(self, pose=None, events=()) -> None:
        """Start a chunk: handle `events` (`memory.events`), run retrieval for `pose`
        (`(x, y, angle_degrees)` or None), and fix this chunk's temporal positions."""
        if self._open and self._committed:
            raise RuntimeError("begin_chunk called while a chunk is being committed; call end_chunk() first")
        for event in events:
            self.handle_event(event)
        if self.archive is not None:
            now = self.next_frame
            self.archive.note_pose(range(now, now + self.spec.chunk_frames), pose)
            if self.layout.retrieved_frames and self._retrieval_due(now):
                with self.timer("retrieve"):
                    self._retrieve(pose)
        self._clock = self._make_clock()
        f = self.spec.tokens_per_frame
        q = torch.tensor(self.positions.query(self._clock), dtype=torch.int64)
        self._chunk_pos = q.repeat_interleave(f).to(self.device)
        for store in self.layers:
            store.segments = None
        self._shared_pos = {}
        self._open = True

    def view(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> KVView:
        """What layer `layer` attends to: the visible cache (pre-RoPE keys, positions, biases) followed by
        the current chunk itself (scratch, last segment). `q`, `k`, `v`: `[H, n, D]`, n = chunk tokens.

        The view aliases the cache buffers (no copies): it is valid until this layer's next `commit`.
        Positions are fixed for the whole chunk (every denoising step sees the same view)."""
        if not self._open:
            self.begin_chunk()
        store = self.layers[layer]
        if store.segments is None:
            store.segments = self._segments(layer, store)
            if store.ann is not None:  # candidates from this chunk's first queries, kept for its later steps
                store.segments = restrict_recent(store, store.segments, q, self.cfg.ann_frames,
                                                 self.cfg.ann_exact_frames)
        scratch = KVSegment(k=k, v=v, pos=self._chunk_pos)
        return KVView(segments=(*store.segments, scratch), q_pos=self._chunk_pos, rope=self.spec.rope)

    def commit(self, layer: int, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor) -> None:
        """Keep the clean chunk (`k`, `v`, `q`: `[H, chunk_frames * tokens_per_frame, D]`) at `layer`:
        append to the recent window, demote what leaves it (score, merge, tier), compact to budget."""
        if not self._open:
            self.begin_chunk()
        if layer in self._committed:
            raise RuntimeError(f"layer {layer} was already committed in this chunk; call end_chunk() first")
        s = self.spec
        n = s.chunk_frames * s.tokens_per_frame
        if k.shape != (s.heads, n, s.head_dim) or v.shape != k.shape:
            raise ValueError(f"commit expects k, v of shape {(s.heads, n, s.head_dim)}, got {tuple(k.shape)}")
        store = self.layers[layer]
        if self.heads is not None and not self.heads.ready:
            with self.timer("profile_heads"):  # on the view this chunk attended to, before it changes
                self._profile_heads(layer, store, q, k, v)
        f, now = s.tokens_per_frame, self.next_frame
        displaced: list[int] = []
        at = len(self._pending) * f  # staging rows after the pending frames
        for i in range(s.chunk_frames):
            kf, vf = k[:, i * f:(i + 1) * f], v[:, i * f:(i + 1) * f]
            if store.sink is not None and not store.sink.full:
                store.sink.push(kf, vf, now + i)
                continue
            if store.recent.full and store.recent.mode == "bounded":
                raise BudgetError(
                    f"policy '{self.cfg.name}' keeps every frame and its budget ({self.layout.budget_bytes:,} bytes) "
                    f"holds {store.recent.capacity} frames; frame {now + i} does not fit")
            old = store.recent.frames[0] if store.recent.full else None
            if store.recent.push(kf, vf, now + i, out=self._stages[layer], at=at + len(displaced) * f):
                displaced.append(old)
            if store.ann is not None:
                store.ann.write(store.recent.row() * f, kf)
            if store.means is not None:
                store.means.write(store.recent.row() * f, kf, vf)
        with self.timer("score"):
            self.scorer.observe(layer, q)
        self._committed.add(layer)
        store.segments = None
        if self.batched:  # every layer displaces the same frames; demote them all after the last commit
            if len(self._committed) == s.layers:
                frames = self._pending + displaced
                due = len(frames) > self.layout.pending_frames
                self.demotion.all_layers(self.layers, self._stage_all, frames if due else [])
                self._set_pending([] if due else frames)
            return
        if displaced:
            m = len(displaced) * f
            self.demotion.layer(layer, store, Tokens(*(t[:, :m] if t.ndim == 3 else t[:m]
                                                       for t in self._stages[layer])), displaced)
        if store.mid is not None:
            with self.timer("score"):
                self.scorer.rescore(layer, store.mid)

    def end_chunk(self) -> None:
        """Finish the chunk: advances `frames_committed` when the chunk was committed (all layers)."""
        if self._committed:
            if len(self._committed) != self.spec.layers:
                missing = sorted(set(range(self.spec.layers)) - self._committed)
                raise RuntimeError(f"end_chunk: layers {missing} were not committed in this chunk")
            if self.archive is not None:
                self.archive.forget_poses_before(self.next_frame - self.layout.recent_frames - 1)
            self.frames_committed += self.spec.chunk_frames
        self._committed.clear()
        self._open = False

    def _set_pending(self, frames: list[int]) -> None:
        """The frames waiting in the staging rows for the next demotion batch (visible to every layer)."""
        self._pending = frames
        for store in self.layers:
            store.pending_frames = len(frames)

    # ------------------------------------------------------------------ retrieval
    def _retrieval_due(self, now: int) -> bool:
        """Whether the chunk starting at frame `now` retrieves: the first, one `retrieve_every` frames
        after the last retrieval, or the first after an event or reset."""
        if self._retrieved_at is not None and now - self._retrieved_at < self.cfg.retrieve_every:
            return False
        self._retrieved_at = now
        return True

    def _retrieve(self, pose) -> None:
        """Fill every layer's `retrieved` region with the archived frames that best match `pose`."""
        if pose is None:
            return
        st0 = self.layers[0]
        visible = set(st0.recent.frames) | (set(st0.sink.frames) if st0.sink else set())
        frames = self.archive.retrieve(pose, self.layout.retrieved_frames, visible)
        if set(frames) == set(st0.retrieved.frames):
            return  # same frames (maybe ranked differently): positions come from frame ids, nothing to load
        k, v = self.archive.frames_kv(frames)
        self.retrieved.load(frames, k, v)  # every layer in one copy

    def _profile_heads(self, layer: int, store: LayerStore, q, k, v) -> None:
        if store.segments is None:
            store.segments = self._segments(layer, store)
        ring = store.recent
        if len(ring.frames) < min(MIN_HISTORY_FRAMES, ring.capacity):
            return
        f = self.spec.tokens_per_frame
        slot = ring.row()
        view = KVView(segments=(*store.segments, KVSegment(k=k, v=v, pos=self._chunk_pos)), q_pos=self._chunk_pos,
                      rope=self.spec.rope)
        self.heads.observe(layer, q, view, segment_names(store), range(slot * f, (slot + 1) * f))

    @property
    def profile(self) -> bool:
        """True: time the policy's own work per section into `timings` (adds device syncs on a GPU)."""
        return self.timer.enabled

    @profile.setter
    def profile(self, on: bool) -> None:
        self.timer.enabled = bool(on)

    @property
    def timings(self) -> dict[str, float]:
        return self.timer.timings

    # ------------------------------------------------------------------ positions and segments
    def _make_clock(self) -> Clock:
        st, lay = self.layers[0], self.layout
        pool_lo = None
        for pool in (st.mid, st.spill):
            if pool is not None and pool.used and pool.min_frame is not None:
                pool_lo = pool.min_frame if pool_lo is None else min(pool_lo, pool.min_frame)
        return Clock(now=self.next_frame, chunk=self.spec.chunk_frames, span=self.span,
                     sink_cap=lay.sink_frames, pool_span=lay.pool_frames, retrieved_cap=lay.retrieved_frames,
                     recent_cap=lay.recent_frames,
                     sink_frames=tuple(st.sink.frames) if st.sink else (),
                     retrieved_frames=tuple(st.retrieved.frames) if st.retrieved else (),
                     recent_frames=tuple(st.recent.frames), pool_lo=pool_lo)

    def _segments(self, layer: int, store: LayerStore) -> tuple[KVSegment, ...]:
        if self.stack is not None and self.stack.used and "mid" not in self._shared_pos:
            self._shared_pos["mid"] = stacked_pool_positions(self.stack, self._clock, self.positions)
        return build_segments(store, layer, self._clock, self.positions, self.heads, self.device, self._shared_pos)

    def slot_tokens(self, layer: int) -> torch.Tensor:
        """`[S]` int64 token id (`frame * tokens_per_frame + index in frame`) of every cached slot of
        `layer`'s view, in view order (scratch excluded); -1 for empty merged-away entries. A merged slot
        carries its newest member's id. For analysis (shadow mode), not the hot path."""
        return slot_tokens(self.layers[layer])

    # ------------------------------------------------------------------ events
    @property
    def next_frame(self) -> int:
        """The id (and, under `absolute` positions, the temporal position) of the next committed frame."""
        return self.frames_committed + self.skipped_frames

    def handle_event(self, event) -> None:
        """Apply one event (a name or a `memory.events.MemoryEvent`): `flush` or `cut`, see `memory.events`."""
        event = as_event(event)
        self.events_seen[event.kind] = self.events_seen.get(event.kind, 0) + 1
        if event.kind == "flush":
            self.flush(event.keep_frames)
        else:
            self.cut(CUT_GAP_FRAMES if event.gap is None else event.gap)

    def flush(self, keep_frames: int | None = None) -> None:
        """KV Flush (Infinity-RoPE): keep the sink and the newest `keep_frames` frames (default: one
        chunk, at least 2 frames), drop the rest. Positions stay on the same clock."""
        keep = max(self.spec.chunk_frames, 2) if keep_frames is None else keep_frames
        self._set_pending([])  # older than every frame `recent` keeps
        for store in self.layers:
            store.recent.keep_last(min(keep, len(store.recent.frames)))
            if store.ann is not None:  # the kept frames now sit at the start of the ring
                store.ann.clear()
                store.ann.write(0, store.recent.k[:, :store.recent.slots_used])
            if store.means is not None:
                store.means.clear()
                store.means.write(0, store.recent.k[:, :store.recent.slots_used],
                                  store.recent.v[:, :store.recent.slots_used])
            self._clear_pools(store)
        self._invalidate()

    def cut(self, gap: int = CUT_GAP_FRAMES) -> None:
        """RoPE cut (Infinity-RoPE): keep every frame; the next frame's id jumps `gap` frames on."""
        if gap < 0:
            raise ValueError(f"a cut's gap must be >= 0 frames, got {gap}")
        self.skipped_frames += int(gap)
        self._invalidate()

    def reset(self) -> None:
        """Forget everything (a new session on the same buffers)."""
        for store in self.layers:
            store.recent.clear()
            if store.ann is not None:
                store.ann.clear()
            if store.means is not None:
                store.means.clear()
            if store.sink is not None:
                store.sink.clear()
            self._clear_pools(store)
        self.scorer.reset()
        if self.archive is not None:
            self.archive.clear()
        self.frames_committed = 0
        self.skipped_frames = 0
        self._set_pending([])
        self._committed.clear()
        self._open = False
        self._invalidate()

    def _clear_pools(self, store: LayerStore) -> None:
        for pool in (store.mid, store.spill):
            if pool is not None:
                pool.clear()
        if self.merger is not None:
            self.merger.reset()
        if store.retrieved is not None:
            store.retrieved.clear()

    def _invalidate(self) -> None:
        self._shared_pos = {}
        self._retrieved_at = None
        for store in self.layers:
            store.segments = None
        if self._open:
            self._clock = self._make_clock()

    # ------------------------------------------------------------------ accounting
    @property
    def max_position(self) -> int | None:
        """Largest temporal position any view can carry (None: grows with the session, `absolute`)."""
        return self.positions.max_position(self.span)

    def region_bytes(self) -> dict[str, int]:
        """Bytes held per region, summed over layers (Python ints; no device sync)."""
        return accounting.region_bytes(self)

    def kv_bytes(self) -> int:
        """Bytes of keys/values currently held, all layers, all tiers (scales and merge counts included)."""
        return sum(self.region_bytes().values())

    def allocated_bytes(self) -> int:
        """Bytes of the preallocated cache buffers (>= kv_bytes; <= the budget for managed policies)."""
        return accounting.allocated_bytes(self)

    def stats(self) -> dict:
        """JSON-able summary: policy, budget, bytes per region and tier, capacities, positions."""
        return accounting.stats(self)
