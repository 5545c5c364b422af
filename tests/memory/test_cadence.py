"""Bookkeeping cadence: demotion in batches of `demote_every` frames (the frames waiting for a batch stay
visible as the `pending` region) and retrieval every `retrieve_every` frames."""

from __future__ import annotations

import pytest
import torch

from reverie.memory import MemoryManager, session_bytes
from reverie.memory.config import PolicyConfig
from reverie.memory.layout import plan_layout, resolve_budget
from reverie.memory.policies import resolve

from memtest import run_chunk, tiny_spec

BUDGET = dict(budget_frac=0.25, horizon_frames=64)
CHUNKS = 40


def _visible_frames(mem, layer=0) -> list[int]:
    f = mem.spec.tokens_per_frame
    ids = mem.slot_tokens(layer)
    return sorted((ids[ids >= 0] // f).tolist())


@pytest.mark.parametrize("chunk_frames", [1, 2])
def test_pending_frames_stay_visible_until_their_batch(chunk_frames):
    """Every frame that left `recent` is visible (pending) until its batch is demoted; no token is visible
    twice; the pending region never holds a batch; the held bytes stay within the budget."""
    spec = tiny_spec(chunk_frames=chunk_frames)
    k = 3
    mem = MemoryManager.create(spec, policy="dual", demote_every=k, **BUDGET)
    assert mem.layout.pending_frames == k - 1
    lay = mem.layout
    seen_pending = set()
    for c in range(CHUNKS):
        run_chunk(mem, spec, c, pose=(10.0 * c, 0.0, 0.0))
        mem.begin_chunk()
        for layer in range(spec.layers):
            mem.view(layer, *(torch.zeros(spec.heads, chunk_frames * spec.tokens_per_frame, spec.head_dim),) * 3)
            ids = mem.slot_tokens(layer)
            held = ids[ids >= 0]
            assert held.unique().numel() == held.numel(), f"a token is visible twice after chunk {c}"
        pending = mem.layers[0].pending_frames
        assert pending < k
        seen_pending.add(pending)
        st = mem.layers[0]
        recent = list(st.recent.frames)
        if recent and recent[0] > lay.sink_frames:
            # the newest frames form an unbroken run: pending ones just below the recent window
            newest = [f for f in _visible_frames(mem) if f >= recent[0] - pending]
            assert sorted(set(newest)) == list(range(recent[0] - pending, mem.frames_committed))
        assert mem.kv_bytes() <= lay.budget_bytes
        mem.end_chunk()
    assert max(seen_pending) > 0 and 0 in seen_pending  # frames did wait, and batches were demoted
    assert mem.region_bytes()["pending"] == mem.layers[0].pending_frames * spec.tokens_per_frame \
        * lay.frame_bytes // spec.tokens_per_frame * spec.layers


def test_a_batch_keeps_what_demoting_frame_by_frame_keeps():
    """With recency scores the mid pool's survivors after each batch equal the frame-by-frame path's (up to
    which tokens of an equally scored frame stay), when both have the same recent window and pool (the
    batched one gets its pending frames' bytes on top)."""
    spec = tiny_spec()
    k = 4
    base = MemoryManager.create(spec, policy="h2o", scorer="recency", recent_frames=3, budget_bytes=40_000)
    extra = (k - 1) * base.layout.frame_bytes * spec.layers
    batched = MemoryManager.create(spec, policy="h2o", scorer="recency", recent_frames=3, demote_every=k,
                                   budget_bytes=40_000 + extra)
    assert batched.layout.mid_tokens == base.layout.mid_tokens
    assert batched.layout.recent_frames == base.layout.recent_frames
    compared = 0
    for c in range(CHUNKS):
        run_chunk(base, spec, c)
        run_chunk(batched, spec, c)
        if batched.layers[0].pending_frames == 0 and batched.stack.used:
            for a, b in zip(base.layers, batched.layers):
                # frames, with how many of their tokens: which token of the oldest frame survives is a tie
                ta = sorted(a.mid.frame[:a.mid.used].tolist())
                tb = sorted(b.mid.frame[:b.mid.used].tolist())
                assert ta == tb, f"after chunk {c}"
            compared += 1
    assert compared >= 5


def test_flush_drops_pending_frames_and_retrieves_again():
    spec = tiny_spec()
    mem = MemoryManager.create(spec, policy="dual", demote_every=3, retrieve_every=5, **BUDGET)
    calls = []
    real = mem.archive.retrieve
    mem.archive.retrieve = lambda *a, **kw: calls.append(mem.frames_committed) or real(*a, **kw)
    for c in range(24):
        run_chunk(mem, spec, c, pose=(0.0, 0.0, 0.0))
    assert calls == [0, 5, 10, 15, 20]
    while mem.layers[0].pending_frames == 0:
        run_chunk(mem, spec, 99, pose=(0.0, 0.0, 0.0))
    n = mem.frames_committed
    mem.begin_chunk(pose=(0.0, 0.0, 0.0), events=("flush",))
    assert calls[-1] == n, "an event makes retrieval due"
    assert mem.layers[0].pending_frames == 0 and mem.region_bytes()["pending"] == 0
    mem.end_chunk()
    mem.reset()
    assert all(st.pending_frames == 0 for st in mem.layers)


def test_pending_frames_are_charged():
    """The layout pays for the pending frames out of the bytes recent and mid share; admission prices
    their rows."""
    spec = tiny_spec()
    budget = resolve_budget(spec, resolve("dual"), None, 0.5, 64)  # 32 frames per layer
    one = plan_layout(spec, resolve("dual", demote_every=1), budget, 64)
    four = plan_layout(spec, resolve("dual", demote_every=4), budget, 64)
    assert one.pending_frames == 0 and four.pending_frames == 3
    assert four.sink_frames == one.sink_frames and four.retrieved_frames == one.retrieved_frames
    assert four.recent_frames < one.recent_frames and four.mid_tokens < one.mid_tokens
    for lay in (one, four):
        assert lay.layer_bytes() <= lay.budget_bytes // spec.layers
    a = session_bytes(spec, "dual", budget_frac=0.5, horizon_frames=64, demote_every=1).as_dict()
    b = session_bytes(spec, "dual", budget_frac=0.5, horizon_frames=64, demote_every=4).as_dict()
    assert b["parts"]["staging"] > a["parts"]["staging"]


@pytest.mark.parametrize("kw", [dict(mid_bits=8), dict(spill_frac=0.5), dict(merge_threshold=0.9),
                                dict(head_groups="profile"), dict(positions="packed")])
def test_batches_refuse_layouts_without_the_batched_path(kw):
    with pytest.raises(ValueError, match="demote_every"):
        PolicyConfig(name="x", mid_frac=0.5, demote_every=2, **kw)


def test_cadence_must_be_positive():
    for field in ("demote_every", "retrieve_every"):
        with pytest.raises(ValueError, match=field):
            PolicyConfig(name="x", **{field: 0})


def test_a_small_budget_gets_smaller_batches():
    """At most an eighth of the budget's frames wait for a batch; a budget too small for any waits demotes at
    every commit, as before, instead of being refused."""
    spec = tiny_spec()
    frames = lambda m: m.layout.budget_bytes // spec.layers // m.layout.frame_bytes  # noqa: E731
    big = MemoryManager.create(spec, policy="dual", demote_every=64, **BUDGET)
    assert big.layout.pending_frames == frames(big) // 8 == 2
    small = MemoryManager.create(spec, policy="dual", demote_every=4, budget_frac=0.25, horizon_frames=28)
    assert small.layout.pending_frames == 0
    for c in range(12):
        run_chunk(small, spec, c, pose=(0.0, 0.0, 0.0))
        assert small.layers[0].pending_frames == 0


def test_pending_frames_read_with_the_ring_and_survive_a_copy():
    """The recent ring and the staging rows share one buffer, so the ring and the pending frames after it
    are one segment of the view; a copy of the memory (`Session.fork`) keeps that sharing and runs on
    exactly as the original."""
    import copy

    spec = tiny_spec()
    mem = MemoryManager.create(spec, policy="dual", demote_every=3, budget_frac=0.5, horizon_frames=64)
    for c in range(20):
        run_chunk(mem, spec, c, pose=(0.0, 0.0, 0.0))
    while mem.layers[0].pending_frames == 0:
        run_chunk(mem, spec, 50, pose=(0.0, 0.0, 0.0))
    mem.begin_chunk()
    q = torch.zeros(spec.heads, spec.tokens_per_frame, spec.head_dim)
    view = mem.view(0, q, q, q)
    st = mem.layers[0]
    recent = view.segments[-2]  # the scratch chunk is last
    assert recent.visible == (st.recent.capacity + st.pending_frames) * spec.tokens_per_frame
    assert recent.k.untyped_storage().data_ptr() == st.stage.k.untyped_storage().data_ptr()
    mem.end_chunk()
    twin = copy.deepcopy(mem)
    t = twin.layers[0]
    assert t.recent.k.untyped_storage().data_ptr() == t.stage.k.untyped_storage().data_ptr()
    assert t.recent.k.untyped_storage().data_ptr() != st.recent.k.untyped_storage().data_ptr()
    for c in range(60, 70):
        a, b = run_chunk(mem, spec, c, pose=(0.0, 0.0, 0.0)), run_chunk(twin, spec, c, pose=(0.0, 0.0, 0.0))
        for (_, va), (_, vb) in zip(a, b):
            assert all(torch.equal(x.k, y.k) and torch.equal(x.pos, y.pos) for x, y in zip(va.segments, vb.segments))
