"""Every byte a session will hold, known before it is built: what a server reserves to admit it.

`session_bytes(spec, policy, budget_bytes)` resolves the policy and the budget and plans the layout exactly
as `MemoryManager.create` does (so it raises the same `BudgetError` / `UnknownPolicyError` for a request
that cannot be built), then adds up the buffers the session keeps, by part:

    kv             cached keys/values of every region (sink, recent, mid, spill, retrieved), scales included,
                   and the ANN codes of the recent ring (`memory.ann`)
    kv_index       per-slot metadata: frame ids of frame regions; frame, index, score and count of pool rows
    staging        the manager's preallocated rows for the frames a commit pushes out of `recent`, after
                   the pending frames of a demotion batch (`PolicyConfig.demote_every`), which the KV
                   budget also counts while they are visible
    views          positions (and biases, head masks) of the current views, kept from a chunk's first view
                   to the next chunk
    scorer         the scorer's per-session state (sampled queries, query sums, a loaded salience head)
    policy_state   merge indices, head-group profile
    archive        the spatial archive in host memory (`memory.spatial.FrameArchive`): K/V, poses, frame ids;
                   pinned when the cache is on CUDA, where PyTorch's caching host allocator rounds each
                   of its two buffers up to a power of two
    recache        the session's `recache_chunks` clean chunks kept to re-commit after a rebuild
    frame_context  the clean latents a frame-stacking model takes (`ModelSpec.frame_context`); the buffer
                   holds those and the chunk appended last
    prompt         the session's prompt, for a model that cross-attends to one (`ModelSpec.prompt_tokens`
                   tokens of `latent_shape[1]` channels), and what the model keeps for it
                   (`ModelSpec.prompt_cache_bytes`)
    seed_frame     the session's copy of its start frame
    frames_out     one chunk of decoded frames waiting to be handed out
    bookkeeping    an allowance for the Python objects (dicts, lists, ints) of the session and its archive

Regions are charged at capacity (a session grows into them), so the total is what the session holds at
its largest; it does not grow after that, except the session's action history (8 bytes a frame, kept for
recordings). A policy that grows without bound (`full` without a budget) cannot be reserved and is a
`BudgetError`. `memory.measure` is the measurement this is checked against (tests/engine/test_session_bytes.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from reverie.memory.ann import content_from
from reverie.memory.ann_rest import mean_tokens
from reverie.memory.config import PolicyConfig
from reverie.memory.errors import BudgetError
from reverie.memory.layout import Layout, plan_layout, resolve_budget, token_bytes
from reverie.memory.no_cache import NO_CACHE, check_context_budget, check_no_cache
from reverie.memory.policies import resolve
from reverie.memory.scorers import QUERY_SAMPLES

DEFAULT_POLICY = "dual"        # what `MemoryManager.create` gives a cached model that names no policy
RECACHE_CHUNKS = 8             # clean chunks a session keeps to re-commit (`engine.session.Session`'s default)
INDEX_BYTES = 8                # int64 frame id / token index
SCORE_BYTES = 4                # float32 score / count / bias
BOOKKEEPING_BYTES = 80 * 1024  # Python objects of a session, its memory and its server record
ARCHIVE_ENTRY_BYTES = 192      # Python objects per archived frame (its index entries)
HOST_PARTS = frozenset({"archive", "seed_frame", "frames_out", "bookkeeping"})  # host memory even with a GPU


def default_policy(spec) -> str:
    """The policy a session gets when it names none: `dual`, or `none` for a model without a cache."""
    return DEFAULT_POLICY if spec.layers > 0 else NO_CACHE


@dataclass(frozen=True, slots=True)
class Footprint:
    """A session's bytes by part (`parts`: name, bytes pairs in the order of the module docstring)."""

    policy: str
    budget_bytes: int          # the resolved KV budget
    parts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.parts)

    @property
    def host_bytes(self) -> int:
        return sum(n for name, n in self.parts if name in HOST_PARTS)

    def as_dict(self) -> dict:
        """JSON-able: the parts, their total, and how much of it is host memory."""
        return {"policy": self.policy, "budget_bytes": self.budget_bytes, "parts": dict(self.parts),
                "total_bytes": self.total, "host_bytes": self.host_bytes}


def session_bytes(spec, policy: str | None = None, budget_bytes: int | None = None, *, budget_frac: float | None = None,
                  horizon_frames: int | None = None, recache_chunks: int = RECACHE_CHUNKS,
                  latent_dtype: torch.dtype = torch.float32, device="cpu", **overrides) -> Footprint:
    """The bytes a session of a model with geometry `spec` holds under `policy` and the budget arguments
    of `MemoryManager.create` (see there), with `recache_chunks` clean chunks kept for rebuilds, latents
    of `latent_dtype` (what the model's `encode` returns) and the cache on `device`.

    Raises:
        BudgetError: the policy cannot fit the budget, or grows without bound (nothing to reserve).
        UnknownPolicyError: unknown policy name or override.
    """
    policy = default_policy(spec) if policy is None else policy
    check_no_cache(spec, policy)
    if spec.layers == 0:  # no cache: the session's own buffers, its frame context among them
        buffers = session_buffer_bytes(spec, recache_chunks, latent_dtype)
        check_context_budget(spec, budget_bytes, buffers["frame_context"])
        return Footprint(policy=NO_CACHE, budget_bytes=int(budget_bytes or 0), parts=(("kv", 0), *buffers.items()))
    cfg = resolve(policy, **overrides)
    budget = resolve_budget(spec, cfg, budget_bytes, budget_frac, horizon_frames)
    layout = plan_layout(spec, cfg, budget, horizon_frames)
    if layout.recent_grows:
        raise BudgetError(f"policy '{cfg.name}' without a budget keeps every frame and grows without bound, so "
                          "its memory cannot be reserved; give the session a budget (budget_bytes)")
    parts = {**memory_bytes(spec, cfg, layout, device), **session_buffer_bytes(spec, recache_chunks, latent_dtype)}
    parts["bookkeeping"] += cfg.archive_frames * ARCHIVE_ENTRY_BYTES
    return Footprint(policy=cfg.name, budget_bytes=budget, parts=tuple(parts.items()))


def memory_bytes(spec, cfg: PolicyConfig, layout: Layout, device="cpu") -> dict[str, int]:
    """The `MemoryManager`'s buffers for `layout`: kv, kv_index, staging, views, scorer, policy_state,
    archive (see the module docstring)."""
    itemsize = torch.empty((), dtype=spec.kv_dtype).element_size()
    n_layers, h, d, f = spec.layers, spec.heads, spec.head_dim, spec.tokens_per_frame
    frames = layout.sink_frames + layout.recent_frames + layout.retrieved_frames
    pools = [(t, b) for t, b in ((layout.mid_tokens, layout.mid_bits), (layout.spill_tokens, layout.spill_bits)) if t]
    kv = frames * layout.frame_bytes + sum((t + 1) * token_bytes(h, d, itemsize, b) for t, b in pools)
    kv += layout.recent_frames * layout.index_frame_bytes  # the ANN codes of the recent ring (`memory.ann`)
    index = frames * f * INDEX_BYTES + sum((t + 1) * 2 * (INDEX_BYTES + SCORE_BYTES) for t, _ in pools)
    staging_tokens = (spec.chunk_frames + layout.pending_frames) * f  # this commit's frames, after the pending
    staging = staging_tokens * (2 * h * d * itemsize + 2 * (INDEX_BYTES + SCORE_BYTES))
    archive_kv = cfg.archive_frames * n_layers * layout.frame_bytes // 2  # keys (and as much for values)
    if archive_kv and torch.device(device).type == "cuda":
        archive_kv = 1 << (archive_kv - 1).bit_length()  # pinned: the caching host allocator's power of two
    archive = 2 * archive_kv + cfg.archive_frames * (INDEX_BYTES + 3 * 8)  # + frame id, pose (x, y, angle)
    return {"kv": n_layers * kv, "kv_index": n_layers * index, "staging": n_layers * staging,
            "views": _view_bytes(spec, cfg, layout), "scorer": _scorer_bytes(spec, cfg, layout),
            "policy_state": _policy_state_bytes(spec, cfg, layout), "archive": archive}


def session_buffer_bytes(spec, recache_chunks: int = RECACHE_CHUNKS,
                         latent_dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """The session's own buffers (`engine.session.Session`): recache, frame_context, seed_frame,
    frames_out, bookkeeping (see the module docstring)."""
    c = spec.chunk_frames
    latent = math.prod(spec.latent_shape) * torch.empty((), dtype=latent_dtype).element_size()
    frame = math.prod(spec.frame_shape)
    space = spec.action_space
    action = INDEX_BYTES if space.encoding == "index" else 4 * space.dim  # int64, or float32 [dim]
    return {"recache": max(1, recache_chunks) * (c * latent + spec.actions_per_chunk * action),
            "frame_context": (spec.frame_context + c) * latent if spec.frame_context else 0,
            "prompt": (spec.prompt_tokens * spec.latent_shape[1] * torch.empty((), dtype=latent_dtype).element_size()
                       + spec.prompt_cache_bytes),
            "seed_frame": frame, "frames_out": spec.frames_per_chunk * frame, "bookkeeping": BOOKKEEPING_BYTES}


def _view_bytes(spec, cfg: PolicyConfig, layout: Layout) -> int:
    """Positions of the chunk and of every cached slot (frame regions share theirs across layers; pools
    have their own per layer), merged tiers' log-count biases, head groups' masks."""
    f = spec.tokens_per_frame
    frame_slots = (layout.sink_frames + layout.recent_frames + layout.retrieved_frames + layout.pending_frames) * f
    pool_slots = layout.mid_tokens + layout.spill_tokens
    total = (spec.chunk_frames * f + frame_slots + spec.layers * pool_slots) * INDEX_BYTES
    if layout.merged:
        total += spec.layers * pool_slots * SCORE_BYTES
    if cfg.head_groups:  # a [H, slots] mask on every segment but the sink
        total += spec.layers * spec.heads * (frame_slots - layout.sink_frames * f + pool_slots) * SCORE_BYTES
    if cfg.indexed:  # each layer's candidate slots (`memory.ann.restrict_recent`)
        total += spec.layers * min(layout.recent_frames, cfg.ann_frames + cfg.ann_exact_frames) * f * INDEX_BYTES
        n = mean_tokens(cfg.ann_rest_tokens, f)
        if n:  # the frames' order and the left-out frames' groups (`memory.ann_rest`)
            total += spec.layers * (1 + n) * layout.recent_frames * INDEX_BYTES
    return total


def _scorer_bytes(spec, cfg: PolicyConfig, layout: Layout) -> int:
    """The scorer's state (a scorer registered elsewhere is charged nothing: add it to `_SCORER_BYTES`)."""
    return _SCORER_BYTES.get(cfg.scorer, _none)(spec, cfg, layout)


def _none(spec, cfg, layout) -> int:
    return 0


def _mass(spec, cfg, layout) -> int:
    """Sampled query indices (a slice of an arange over the chunk's tokens) and each layer's sampled queries."""
    n = spec.chunk_frames * spec.tokens_per_frame
    arange = len(range(0, n, max(n // QUERY_SAMPLES, 1)))
    samples = min(arange, QUERY_SAMPLES)
    return arange * INDEX_BYTES + spec.layers * spec.heads * samples * spec.head_dim * 4


def _participation(spec, cfg, layout) -> int:
    return spec.layers * cfg.query_frames * spec.heads * spec.head_dim * 4


def _salience(spec, cfg, layout) -> int:
    """The loaded head (one MLP per layer), twice when stacked mid pools score all layers at once (the head
    keeps stacked copies of its weights); the attention-mass proxy without a trained head."""
    hidden = _head_hidden(spec.name, spec.layers, spec.heads, spec.head_dim, cfg.salience_weights)
    if hidden is None:
        return _mass(spec, cfg, layout)
    params = spec.layers * ((spec.heads * spec.head_dim + 1) * hidden + hidden + 1)
    stacked = bool(layout.mid_tokens) and not layout.mid_bits and not layout.spill_tokens and not layout.merged
    return params * 4 * (2 if stacked else 1)


@lru_cache(maxsize=32)
def _head_hidden(name: str, layers: int, heads: int, head_dim: int, path: str | None) -> int | None:
    from types import SimpleNamespace

    from reverie.memory.salience import salience_geometry

    geometry = salience_geometry(SimpleNamespace(name=name, layers=layers, heads=heads, head_dim=head_dim), path)
    return None if geometry is None else geometry["hidden"]


_SCORER_BYTES = {"recency": _none, "change": _none, "mass": _mass, "participation": _participation,
                 "salience": _salience}


def _policy_state_bytes(spec, cfg: PolicyConfig, layout: Layout) -> int:
    total = 0
    if cfg.merge_threshold is not None and layout.mid_tokens:
        total += spec.layers * spec.tokens_per_frame * INDEX_BYTES  # the merger's latest slot per index
    if cfg.head_groups:
        total += spec.layers * 4 * spec.heads * 4 + spec.layers * spec.heads  # profiled mass, static mask
    if cfg.ann_bits and cfg.ann_index == "lsh":  # each layer's LSH projections (float32), bit weights and table offsets (int64)
        hashed = spec.head_dim - content_from(spec)
        total += spec.layers * (hashed * cfg.ann_tables * cfg.ann_bits * 4 + (cfg.ann_bits + spec.heads * cfg.ann_tables) * 8)
    return total
