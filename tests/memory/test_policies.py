import json
import math

import pytest
import torch

from reverie.kernels import attend_ref
from reverie.kernels.rope import apply_rope_ref
from reverie.kernels.view import KVSegment, KVView, RopeSpec
from reverie.memory import MemoryManager
from reverie.memory.salience import SalienceHead, load_salience_head, sse_targets
from reverie.memory.spatial import FrameArchive, view_overlap
from reverie.memory.layer_store import segment_names

from memtest import chunk_qkv, run_chunk, tiny_spec


def full_reference(spec, history, q, k, v, frames):
    """Attention over every committed frame (absolute positions) plus the chunk."""
    ks = torch.cat([h[0] for h in history] + [k], 1)
    vs = torch.cat([h[1] for h in history] + [v], 1)
    pos = torch.arange(ks.shape[1]) // spec.tokens_per_frame
    qpos = torch.tensor(frames).repeat_interleave(spec.tokens_per_frame)
    return attend_ref(q, KVView(segments=(KVSegment(k=ks, v=vs, pos=pos),), q_pos=qpos, rope=spec.rope))


def test_merge_identity_is_exact_on_duplicated_keys():
    spec = tiny_spec(rope_dims=0, layers=1)
    n_frames = 24
    mem = MemoryManager.create(spec, policy="tempcache", budget_frac=0.5, horizon_frames=n_frames,
                               merge_threshold=0.999)
    base_k = torch.randn(spec.heads, spec.tokens_per_frame, spec.head_dim)
    history = []
    for c in range(n_frames):
        q = torch.randn(spec.heads, spec.tokens_per_frame, spec.head_dim)
        v = torch.randn(spec.heads, spec.tokens_per_frame, spec.head_dim)
        mem.begin_chunk()
        out = attend_ref(q, mem.view(0, q, base_k, v))
        torch.testing.assert_close(out, full_reference(spec, history, q, base_k, v, [c]), rtol=1e-5, atol=1e-6)
        mem.commit(0, base_k, v, q)
        mem.end_chunk()
        history.append((base_k, v))
    pool = mem.layers[0].mid
    live = torch.isfinite(pool.score[:pool.used])
    assert int(live.sum()) == spec.tokens_per_frame  # one representative per spatial index
    assert bool((pool.count[:pool.used][live] == n_frames - mem.layout.recent_frames).all())
    assert mem.kv_bytes() <= mem.layout.budget_bytes


def test_distinct_keys_do_not_merge():
    spec = tiny_spec(rope_dims=0, layers=1)
    mem = MemoryManager.create(spec, policy="tempcache", budget_frac=1.0, horizon_frames=16, merge_threshold=0.99)
    for c in range(12):
        run_chunk(mem, spec, c)
    pool = mem.layers[0].mid
    assert bool((pool.count[:pool.used] == 1).all())


def test_rope_at_read_equals_rotating_stored_keys():
    spec = tiny_spec(rope_dims=8, head_dim=8)
    mem = MemoryManager.create(spec, policy="window", budget_frac=0.5, horizon_frames=16, positions="relative")
    for c in range(11):
        mem.begin_chunk()
        q, k, v = chunk_qkv(spec, c, 1)
        view = mem.view(1, q, k, v)
        if c < 10:
            for layer in range(spec.layers):
                mem.commit(layer, *chunk_qkv(spec, c, layer)[1:], q)
            mem.end_chunk()
    rotated = tuple(KVSegment(k=apply_rope_ref(s.k, s.pos, spec.rope), v=s.v, pos=s.pos, bias=s.bias)
                    for s in view.segments)
    q_rot = apply_rope_ref(q, view.q_pos, spec.rope)
    plain = KVView(segments=rotated, q_pos=view.q_pos, rope=RopeSpec(dims=0))
    torch.testing.assert_close(attend_ref(q, view), attend_ref(q_rot, plain), rtol=1e-5, atol=1e-5)


def test_relative_positions_equal_absolute_ones_for_a_plain_window():
    """RoPE depends on position differences only: shifting every position leaves attention unchanged."""
    spec = tiny_spec(rope_dims=8, head_dim=8)
    outs = {}
    for positions in ("absolute", "relative"):
        mem = MemoryManager.create(spec, policy="window", budget_frac=0.5, horizon_frames=16, sink_frames=0,
                                   positions=positions)
        for c in range(20):
            views = run_chunk(mem, spec, c, attend=True)
        outs[positions] = views[0][2]
    torch.testing.assert_close(outs["absolute"], outs["relative"], rtol=1e-4, atol=1e-5)


def test_deep_sink_realigns_the_sink_next_to_the_tail():
    spec = tiny_spec()
    mem = MemoryManager.create(spec, policy="deep-sink", budget_frac=0.25, horizon_frames=64)
    for c in range(80):
        views = run_chunk(mem, spec, c)
    st = mem.layers[0]
    names = segment_names(st)
    segs = dict(zip(names, views[0][1].segments))
    sink_top = int(segs["sink"].pos.max())
    tail_low = min(int(segs[n].pos.min()) for n in ("mid", "recent") if n in segs)
    assert sink_top == tail_low - 1  # contiguous: no temporal gap behind the sink


def _static_head_qkv(spec, chunk, layer):
    """Head 1 of every layer looks only at its own chunk (static); head 0 spreads over history."""
    q, k, v = chunk_qkv(spec, chunk, layer)
    q = q.clone()
    q[0] *= 0.01
    q[1] = k[1] * 8.0
    return q, k, v


def test_head_profiling_is_deterministic_and_finds_static_heads(tmp_path):
    spec = tiny_spec(layers=3, rope_dims=0)
    groups = []
    for _ in range(2):
        mem = MemoryManager.create(spec, policy="headwise", budget_frac=0.5, horizon_frames=32)
        for c in range(12):
            run_chunk(mem, spec, c, qkv=lambda ch, l: _static_head_qkv(spec, ch, l))
        groups.append(mem.stats()["static_heads"])
    assert groups[0] == groups[1]
    assert groups[0] == {"0": [], "1": [1], "2": [1]}
    # static heads see only sink + anchor + chunk
    q, k, v = _static_head_qkv(spec, 12, 2)
    mem.begin_chunk()
    view = mem.view(2, q, k, v)
    names = segment_names(mem.layers[2])
    for name, seg in zip(names, view.segments):
        if name in ("mid", "recent"):
            hidden = torch.isinf(seg.bias[1]).sum().item()
            expect = seg.pos.shape[0] - (spec.tokens_per_frame if name == "recent" else 0)
            assert hidden == expect and not torch.isinf(seg.bias[0]).any()
    # a saved profile loads back into a new session
    path = tmp_path / "heads.json"
    path.write_text(json.dumps(mem.heads.to_json()))
    other = MemoryManager.create(spec, policy="headwise", budget_frac=0.5, horizon_frames=32, head_profile=str(path))
    assert other.stats()["static_heads"] == groups[0]


def test_archive_retrieves_the_frames_nearest_in_pose_and_view_direction():
    spec = tiny_spec(layers=1)
    arch = FrameArchive(spec, capacity=8, device="cpu", fov=90.0, distance_scale=100.0)
    poses = {0: (0, 0, 0), 1: (0, 0, 180), 2: (500, 0, 0), 3: (10, 0, 20), 4: (0, 5, 350)}
    k = torch.randn(spec.heads, spec.tokens_per_frame, spec.head_dim)
    for f, p in poses.items():
        arch.note_pose(range(f, f + 1), p)
        arch.put(0, [f], k, k)
    assert arch.retrieve((0, 0, 0), 3, exclude=set()) == [0, 4, 3]
    assert arch.retrieve((0, 0, 0), 3, exclude={0}) == [4, 3, 2]
    assert arch.retrieve((0, 0, 180), 1, exclude=set()) == [1]
    here = (3.0, -2.0, 10.0)  # the vectorised ranking agrees with the scalar formula
    want = sorted((f for f in poses if view_overlap(here, poses[f], 90.0, 100.0) > 0),
                  key=lambda f: (-view_overlap(here, poses[f], 90.0, 100.0), -f))
    assert arch.retrieve(here, 5, exclude=set()) == want


def test_spatial_policy_brings_back_the_frame_seen_from_the_same_pose():
    spec = tiny_spec(layers=2)
    mem = MemoryManager.create(spec, policy="spatial", budget_frac=0.25, horizon_frames=64, retrieved_frames=2)
    for c in range(40):  # walk east, looking east; frame 5 looked north from a distinctive place
        pose = (0.0, 300.0, 90.0) if c == 5 else (20.0 * c, 0.0, 0.0)
        run_chunk(mem, spec, c, pose=pose)
    q, k, v = chunk_qkv(spec, 40, 0)
    mem.begin_chunk(pose=(0.0, 300.0, 90.0))
    assert mem.layers[0].retrieved.frames[0] == 5
    view = mem.view(1, q, k, v)
    seg = dict(zip(segment_names(mem.layers[1]), view.segments))["retrieved"]
    _, k5, _ = chunk_qkv(spec, 5, 1)
    assert any(torch.equal(seg.k[:, i * 4:(i + 1) * 4], k5) for i in range(2))


def test_salience_head_round_trip_and_geometry_check(tmp_path):
    spec = tiny_spec()
    head = SalienceHead(spec.layers, spec.heads, spec.head_dim)
    path = tmp_path / "s.safetensors"
    head.save(path, spec.name)
    back = load_salience_head(spec, path, "cpu")
    k = torch.randn(spec.heads, 5, spec.head_dim)
    torch.testing.assert_close(back.predict(1, k), head.predict(1, k))
    ks = torch.randn(spec.layers, spec.heads, 5, spec.head_dim)  # every layer in one batch == layer by layer
    torch.testing.assert_close(back.predict_all(ks), torch.stack([back.predict(i, ks[i]) for i in range(spec.layers)]))
    with pytest.raises(ValueError, match="trained for"):
        load_salience_head(tiny_spec(heads=4), path, "cpu")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(ValueError, match="unreadable"):
        load_salience_head(spec, tmp_path / "bad.safetensors", "cpu")
    mem = MemoryManager.create(spec, policy="salience", budget_frac=0.5, horizon_frames=16, salience_weights=str(path))
    assert mem.stats()["scorer_trained"] is True
    untrained = MemoryManager.create(spec, policy="salience", budget_frac=0.5, horizon_frames=16)
    assert untrained.stats()["scorer_trained"] is False


def test_sse_targets_rank_the_key_the_future_attends_to_first():
    h, d = 1, 8
    k = torch.randn(h, 6, d)
    q = torch.randn(h, 6, d) * 0.01
    q[:, 4:] = k[:, 1:2] * 5.0  # queries of chunk 2 look at key 1 (chunk 0)
    chunks = torch.tensor([0, 0, 1, 1, 2, 2])
    t = sse_targets(q, k, chunks, chunks)
    assert int(t[:2].argmax()) == 1


def test_trained_salience_keeps_the_tokens_the_head_ranks_highest(tmp_path):
    spec = tiny_spec(layers=1)
    head = SalienceHead(spec.layers, spec.heads, spec.head_dim)
    path = tmp_path / "s.safetensors"
    head.save(path, spec.name)
    mem = MemoryManager.create(spec, policy="salience", budget_frac=0.5, horizon_frames=24, salience_weights=str(path),
                               age_decay=1.0)
    demoted = []
    for c in range(20):
        run_chunk(mem, spec, c)
    recent = mem.layout.recent_frames
    for c in range(20 - recent - mem.layout.sink_frames):
        demoted.append(chunk_qkv(spec, c + mem.layout.sink_frames, 0)[1])
    keys = torch.cat(demoted, 1)
    pred = head.predict(0, keys).clamp_min(0.0)
    pool = mem.layers[0].mid
    kept = sorted(pool.score[:pool.used].tolist(), reverse=True)
    best = sorted(torch.topk(pred, pool.used).values.tolist(), reverse=True)
    torch.testing.assert_close(torch.tensor(kept), torch.tensor(best))


def test_packed_positions_are_contiguous_and_ordered():
    spec = tiny_spec(layers=1)
    mem = MemoryManager.create(spec, policy="h2o", budget_frac=0.25, horizon_frames=64, positions="packed",
                               sink_frames=2)
    for c in range(40):
        run_chunk(mem, spec, c)
    mem.begin_chunk()
    view = mem.view(0, *chunk_qkv(spec, 40, 0))
    segs = dict(zip(segment_names(mem.layers[0]), view.segments))
    sink, mid, recent = (segs[n].pos for n in ("sink", "mid", "recent"))
    span = mem.layout.pool_frames
    assert sorted(set(sink.tolist())) == [0, 1]
    assert 2 <= int(mid.min()) and int(mid.max()) < 2 + span
    r = mem.layout.recent_frames
    assert sorted(set(recent.tolist())) == list(range(2 + span, 2 + span + r))
    assert set(view.q_pos.tolist()) == {2 + span + r} and mem.max_position == 2 + span + r
    # recent positions follow frame order
    order = torch.argsort(mem.layers[0].recent.frame[: recent.shape[0]])
    assert bool((recent[order][1:] >= recent[order][:-1]).all())


# Position tests on a small layout whose contents are known by hand: one layer, 4 tokens per frame
# (512 bytes a frame), a 3-frame recent window and a recency-scored mid pool of 8 tokens (2 frames), run
# for 60 chunks of one frame. The view of chunk 60 then holds frames 55, 56 (mid) and 57, 58, 59 (recent).
FRAME_B, TOKEN_B = 512, 128
SMALL = dict(recent_frames=3, mid_frac=1.0, scorer="recency")


def _small(policy="h2o", *, sink=0, mid=True, spec=None, **kw):
    spec = spec or tiny_spec(layers=1)
    budget = (sink + 3) * FRAME_B + (9 * TOKEN_B if mid else 0)  # 8 mid tokens + the pool's dump row
    over = dict(SMALL, mid_frac=1.0 if mid else 0.0, **kw)
    if sink:
        over.update(sink_frames=sink, sink_frac=0.0)
    mem = MemoryManager.create(spec, policy=policy, budget_bytes=budget, **over)
    assert (mem.layout.sink_frames, mem.layout.recent_frames, mem.layout.mid_tokens) == (sink, 3, 8 if mid else 0)
    return mem, spec


def _positions(mem, spec, chunks=60, seed=0, layer=0):
    """After `chunks` chunks, the view of the next one: `q_pos` of the chunk and, per region, `{frame:
    position}` (every token of a frame must carry the same position)."""
    for c in range(chunks):
        run_chunk(mem, spec, c, seed=seed)
    mem.begin_chunk()
    view = mem.view(layer, *chunk_qkv(spec, chunks, layer, seed))
    frames = mem.slot_tokens(layer) // spec.tokens_per_frame
    out, at = {}, 0
    for name, seg in zip(segment_names(mem.layers[layer]), view.segments[:-1]):
        n = seg.pos.shape[0]
        per = {}
        for f, p in zip(frames[at:at + n].tolist(), seg.pos.tolist()):
            assert per.setdefault(f, p) == p, f"frame {f} has two positions in region {name}"
        out[name] = per
        at += n
    return sorted(set(view.q_pos.tolist())), out


def test_relative_positions_keep_true_distances_within_the_models_span():
    """The chunk (frame 60) sits at the top of the model's span (100 -> 99); a frame d frames older sits
    d lower, so RoPE sees the true distances."""
    import dataclasses

    mem, spec = _small(spec=dataclasses.replace(tiny_spec(layers=1), temporal_span=100))
    q, pos = _positions(mem, spec)
    assert q == [99] and mem.max_position == 99
    assert pos == {"mid": {55: 94, 56: 95}, "recent": {57: 96, 58: 97, 59: 98}}


@pytest.mark.parametrize("span, q, mid, recent", [
    (6, 5, {55: 0, 56: 1}, {57: 2, 58: 3, 59: 4}),  # everything within reach: true distances
    (4, 3, {55: 0, 56: 0}, {57: 0, 58: 1, 59: 2}),  # frames 3+ back collapse onto position 0
])
def test_relative_positions_collapse_the_oldest_onto_zero_inside_the_span(span, q, mid, recent):
    mem, spec = _small(position_span=span)
    got_q, pos = _positions(mem, spec)
    assert got_q == [q] and mem.max_position == span - 1
    assert pos == {"mid": mid, "recent": recent}


def test_relative_sink_keeps_its_true_distance():
    """`relative` does not move the sink: frames 0 and 1 are 60 and 59 frames back from the chunk at 99."""
    mem, spec = _small("h2o", sink=2, position_span=100)
    q, pos = _positions(mem, spec)
    assert q == [99]
    assert pos == {"sink": {0: 39, 1: 40}, "mid": {55: 94, 56: 95}, "recent": {57: 96, 58: 97, 59: 98}}


@pytest.mark.parametrize("span, q, sink, recent", [
    (100, 99, {0: 94, 1: 95}, {57: 96, 58: 97, 59: 98}),  # the sink moves up next to the oldest recent frame
    (6, 5, {0: 0, 1: 1}, {57: 2, 58: 3, 59: 4}),  # the tail starts right at S = 2
    (4, 3, {0: 0, 1: 1}, {57: 2, 58: 2, 59: 2}),  # the tail collapses at S, never onto the sink
])
def test_sink_realign_puts_the_sink_right_below_the_oldest_tail_frame(span, q, sink, recent):
    mem, spec = _small("deep-sink", sink=2, mid=False, position_span=span)
    got_q, pos = _positions(mem, spec)
    assert got_q == [q] and mem.max_position == span - 1
    assert pos == {"sink": sink, "recent": recent}


def test_sink_realign_with_a_mid_pool_leaves_no_gap_below_the_tail():
    """The pools' host-side `min_frame` is only a lower bound (it never rises when old tokens are evicted:
    frame 2 here), so the sink is placed from the positions the tail really holds, on the device."""
    mem, spec = _small("deep-sink", sink=2, position_span=100)
    q, pos = _positions(mem, spec)
    assert mem.layers[0].mid.min_frame < 55  # the stale bound that used to leave a 53-position gap
    assert pos == {"sink": {0: 92, 1: 93}, "mid": {55: 94, 56: 95}, "recent": {57: 96, 58: 97, 59: 98}}


def test_sink_realign_places_each_layers_sink_below_that_layers_own_tail():
    """Under a content-dependent scorer each layer's pool keeps other tokens, so each layer's sink sits
    right below its own oldest kept frame, and the rest of the view is as under `relative`."""
    spec = tiny_spec(layers=2)
    mem = MemoryManager.create(spec, policy="deep-sink", budget_frac=0.25, horizon_frames=64, position_span=40)
    for c in range(40):
        run_chunk(mem, spec, c, seed=3)
    mem.begin_chunk()
    for layer in range(spec.layers):
        view = mem.view(layer, *chunk_qkv(spec, 40, layer, 3))
        names = segment_names(mem.layers[layer])
        sink = view.segments[names.index("sink")].pos
        tail = torch.cat([seg.pos for name, seg in zip(names, view.segments) if name in ("mid", "recent")])
        n = len(mem.layers[layer].sink.frames)
        assert sorted(set(sink.tolist())) == list(range(int(tail.min()) - n, int(tail.min())))


def test_positions_are_monotone_in_age_and_independent_of_what_else_is_cached():
    """Under a content-dependent scorer the mid pool's survivors differ with the K/V, but a frame's
    position depends only on its age: the same in every layer, every denoising step and every session;
    older frames never sit above newer ones, and everything stays below the chunk."""
    spec = tiny_spec(layers=2)
    maps = []
    for seed in (0, 1):
        mem = MemoryManager.create(spec, policy="h2o", budget_frac=0.25, horizon_frames=64, position_span=24)
        for c in range(40):
            run_chunk(mem, spec, c, seed=seed)
        mem.begin_chunk()
        per_frame = {}
        for layer in range(spec.layers):
            for step in range(2):  # two denoising steps: other q/k/v, same positions
                view = mem.view(layer, *chunk_qkv(spec, 40 + step, layer, seed + 7))
                assert set(view.q_pos.tolist()) == {23}
                pos = torch.cat([seg.pos for seg in view.segments[:-1]])
                frames = mem.slot_tokens(layer) // spec.tokens_per_frame
                assert int(pos.max()) < 23 and int(pos.min()) >= 0
                for f, p in zip(frames.tolist(), pos.tolist()):
                    assert per_frame.setdefault(f, p) == p
        mem.end_chunk()
        ordered = [per_frame[f] for f in sorted(per_frame)]
        assert ordered == sorted(ordered)  # monotone in frame id
        maps.append(per_frame)
    assert set(maps[0]) != set(maps[1])  # the seeds kept different frames ...
    common = set(maps[0]) & set(maps[1])
    assert len(common) >= 5 and all(maps[0][f] == maps[1][f] for f in common)  # ... at the same positions


def test_model_temporal_span_widens_the_default_position_span():
    import dataclasses

    spec = tiny_spec(layers=1)
    short = MemoryManager.create(spec, policy="dual", budget_frac=0.25, horizon_frames=32)
    wide = MemoryManager.create(dataclasses.replace(spec, temporal_span=100), policy="dual", budget_frac=0.25,
                                horizon_frames=32)
    assert short.max_position < 32 and wide.max_position == 99  # the model knows distances up to 100
    narrow = MemoryManager.create(dataclasses.replace(spec, temporal_span=4), policy="dual", budget_frac=0.25,
                                  horizon_frames=32)
    assert narrow.max_position == short.max_position  # never narrower than the layout
    pinned = MemoryManager.create(dataclasses.replace(spec, temporal_span=100), policy="dual", budget_frac=0.25,
                                  horizon_frames=32, position_span=40)
    assert pinned.max_position == 39  # an explicit position_span wins


def test_packed_spreads_the_pool_over_the_frames_it_really_holds():
    """`packed` compresses the pools' frames into their band from the oldest frame they still hold (on the
    device), not from the host's stale lower bound, which would squeeze frames 55 and 56 onto one position."""
    mem, spec = _small(sink=1, positions="packed")
    q, pos = _positions(mem, spec)
    assert pos == {"sink": {0: 0}, "mid": {55: 1, 56: 2}, "recent": {57: 3, 58: 4, 59: 5}} and q == [6]


def test_packed_orders_a_spill_tier_and_its_mid_pool_on_one_scale():
    """With two pools (mid and its int4 spill tier) the band is spread from the oldest frame of either, so
    a frame's position never falls below an older frame's, whichever pool holds it."""
    spec = tiny_spec(layers=1)
    mem = MemoryManager.create(spec, policy="quant", budget_frac=0.25, horizon_frames=64, positions="packed")
    for c in range(40):
        run_chunk(mem, spec, c)
    mem.begin_chunk()
    view = mem.view(0, *chunk_qkv(spec, 40, 0))
    names = segment_names(mem.layers[0])
    assert "spill" in names and "mid" in names
    frames = (mem.slot_tokens(0) // spec.tokens_per_frame).tolist()
    pos = torch.cat([seg.pos for seg in view.segments[:-1]]).tolist()
    pairs = sorted((f, p) for f, p in zip(frames, pos) if f >= 0)
    assert all(p1 <= p2 for (_, p1), (_, p2) in zip(pairs, pairs[1:]))
    lo = len(mem.layers[0].sink.frames) if mem.layers[0].sink is not None else 0
    pooled = [p for n, seg in zip(names, view.segments) if n in ("mid", "spill") for p in seg.pos.tolist()]
    assert lo <= min(pooled) and max(pooled) < lo + mem.layout.pool_frames


def test_the_prefaulter_touches_slots_ahead_and_never_a_written_one():
    """The archive's pages are faulted in ahead of its writer on a background thread; every frame read back is
    the one written, while the prefaulter works beside the writer."""
    import time

    spec = tiny_spec(layers=2)
    arch = FrameArchive(spec, capacity=64, device="cpu")
    arch.k.fill_(float("nan"))                              # what an untouched slot may hold
    arch.v.fill_(float("nan"))
    g = torch.Generator().manual_seed(0)
    written = {}
    for f in range(40):
        k = torch.randn(spec.layers, spec.heads, spec.tokens_per_frame, spec.head_dim, generator=g)
        arch.note_pose(range(f, f + 1), (f, 0.0, 0.0))
        arch.put_layers([f], k, -k)
        written[f] = k
    deadline = time.monotonic() + 5
    while arch._touched < 40 + 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    for f, k in written.items():
        kk, vv = arch.frames_kv([f])
        assert torch.equal(kk[0], k) and torch.equal(vv[0], -k)
    ahead = arch.k[40:48]
    assert arch._touched >= 48 and torch.equal(ahead, torch.zeros_like(ahead))   # touched: zeroed
    assert torch.isnan(arch.k[60:]).all()                   # far ahead: left alone
