import pytest
import torch

from reverie.kernels import attend_ref
from reverie.kernels.view import KVSegment, KVView
from reverie.memory import BudgetError, MemoryManager, UnknownPolicyError, available_policies
from reverie.memory.events import CUT_GAP_FRAMES, MemoryEvent

from memtest import chunk_qkv, run_chunk, tiny_spec


def reference_view(spec, history, q_frames, k, v, positions):
    """One segment holding every committed K/V then the chunk: the unmanaged cache, concatenated."""
    ks = torch.cat([h[0] for h in history] + [k], dim=1)
    vs = torch.cat([h[1] for h in history] + [v], dim=1)
    pos = torch.tensor(positions, dtype=torch.int64).repeat_interleave(spec.tokens_per_frame)
    qpos = torch.tensor(q_frames, dtype=torch.int64).repeat_interleave(spec.tokens_per_frame)
    return KVView(segments=(KVSegment(k=ks, v=vs, pos=pos),), q_pos=qpos, rope=spec.rope)


@pytest.mark.parametrize("chunk_frames", [1, 2])
def test_full_at_budget_one_reproduces_unmanaged_reference_bit_exactly(chunk_frames):
    spec = tiny_spec(chunk_frames=chunk_frames)
    horizon = 12
    mem = MemoryManager.create(spec, policy="full", budget_frac=1.0, horizon_frames=horizon)
    history = {l: [] for l in range(spec.layers)}
    for c in range(horizon // chunk_frames):
        mem.begin_chunk()
        frames = [c * chunk_frames + i for i in range(chunk_frames)]
        for layer in range(spec.layers):
            q, k, v = chunk_qkv(spec, c, layer)
            out = attend_ref(q, mem.view(layer, q, k, v))
            past = [f for f in range(c * chunk_frames)]
            ref = attend_ref(q, reference_view(spec, history[layer], frames, k, v, past + frames))
            assert torch.equal(out, ref)
            mem.commit(layer, k, v, q)
            history[layer].append((k, v))
        mem.end_chunk()
    assert mem.kv_bytes() == horizon * spec.kv_bytes_per_frame
    with pytest.raises(BudgetError, match="keeps every frame"):
        run_chunk(mem, spec, 99)


@pytest.mark.parametrize("horizon", [None, 8])
def test_full_without_budget_grows(horizon):
    spec = tiny_spec()
    mem = MemoryManager.create(spec, policy="full", horizon_frames=horizon)
    if horizon:  # preallocated to the horizon
        assert mem.allocated_bytes() == horizon * spec.kv_bytes_per_frame
    for c in range(40):
        run_chunk(mem, spec, c)
    assert mem.frames_committed == 40
    assert mem.kv_bytes() == 40 * spec.kv_bytes_per_frame
    assert mem.layout.budget_bytes is None


def test_window_equals_a_rolling_cache():
    spec = tiny_spec()
    sink, recent = 1, 3
    budget = (sink + recent) * spec.kv_bytes_per_frame
    mem = MemoryManager.create(spec, policy="window", budget_bytes=budget, sink_frames=sink)
    assert mem.layout.recent_frames == recent
    kept = {l: [] for l in range(spec.layers)}  # (frame, k, v) of a plain rolling list
    for c in range(10):
        mem.begin_chunk()
        for layer in range(spec.layers):
            q, k, v = chunk_qkv(spec, c, layer)
            cache = kept[layer]
            ref_view = reference_view(spec, [(k_, v_) for _, k_, v_ in cache], [c], k, v,
                                      [f for f, _, _ in cache] + [c])
            out = attend_ref(q, mem.view(layer, q, k, v))
            torch.testing.assert_close(out, attend_ref(q, ref_view), rtol=1e-5, atol=1e-6)
            mem.commit(layer, k, v, q)
            cache.append((c, k, v))
            if len(cache) > sink + recent:
                del cache[sink]  # FIFO behind the sink
        mem.end_chunk()
        assert mem.kv_bytes() <= budget


def test_budget_error_is_clear():
    spec = tiny_spec()
    with pytest.raises(BudgetError, match=r"cannot fit a budget of .* needs at least"):
        MemoryManager.create(spec, policy="window", budget_bytes=spec.kv_bytes_per_frame, sink_frames=2)
    with pytest.raises(BudgetError, match="horizon_frames"):
        MemoryManager.create(spec, policy="window", budget_frac=0.5)
    with pytest.raises(BudgetError, match="not both"):
        MemoryManager.create(spec, policy="window", budget_frac=0.5, budget_bytes=10, horizon_frames=4)


def test_unknown_policy_lists_the_available_ones():
    with pytest.raises(UnknownPolicyError) as err:
        MemoryManager.create(tiny_spec(), policy="nope")
    for name in available_policies():
        assert name in str(err.value)
    with pytest.raises(UnknownPolicyError, match="unknown override"):
        MemoryManager.create(tiny_spec(), policy="window", sink_franes=2)


def test_commit_twice_in_a_chunk_is_an_error():
    spec = tiny_spec()
    mem = MemoryManager.create(spec, policy="window", budget_frac=0.5, horizon_frames=16)
    mem.begin_chunk()
    q, k, v = chunk_qkv(spec, 0, 0)
    mem.commit(0, k, v, q)
    with pytest.raises(RuntimeError, match="already committed"):
        mem.commit(0, k, v, q)
    with pytest.raises(RuntimeError, match="not committed"):
        mem.end_chunk()


def test_flush_keeps_sink_and_newest_frames():
    spec = tiny_spec()
    mem = MemoryManager.create(spec, policy="window", budget_frac=0.5, horizon_frames=16, sink_frames=1)
    for c in range(8):
        run_chunk(mem, spec, c)
    mem.begin_chunk(events=["flush"])
    st = mem.layers[0]
    assert st.sink.frames == [0] and st.recent.frames == [6, 7]
    view = mem.view(0, *chunk_qkv(spec, 8, 0))
    assert view.visible == 4 * spec.tokens_per_frame  # sink + 2 recent + chunk
    mem.end_chunk()
    mem.begin_chunk(events=[MemoryEvent("flush", keep_frames=0)])  # a new scene: the sink alone
    assert st.sink.frames == [0] and st.recent.frames == []
    assert mem.stats()["events"] == {"flush": 2}
    with pytest.raises(ValueError, match="unknown memory event"):
        mem.begin_chunk(events=["teleport!"])
    with pytest.raises(ValueError, match="gap must be an int"):
        MemoryEvent("cut", gap=-1)
    mem.reset()
    assert mem.kv_bytes() == 0 and mem.frames_committed == 0


@pytest.mark.parametrize("policy, moved", [("full", "query"), ("window", "query"), ("dual", "history"),
                                           ("h2o", "history")])
def test_cut_keeps_history_and_moves_the_new_scene_a_gap_away(policy, moved):
    """A RoPE cut keeps every cached frame; the distance between the history and the next chunk grows by
    the gap: under `absolute` positions the chunk's positions jump, under window-relative ones the
    history's drop (the chunk stays at the top of the span)."""
    spec = tiny_spec()
    mem = MemoryManager.create(spec, policy=policy, budget_frac=0.5, horizon_frames=64)
    for c in range(6):
        run_chunk(mem, spec, c)
    held = lambda: list(mem.layers[0].recent.frames)  # noqa: E731
    before_frames = held()
    mem.begin_chunk()
    before = mem.view(0, *chunk_qkv(spec, 6, 0))
    mem.end_chunk()  # nothing committed: the same chunk again after the cut
    mem.begin_chunk(events=[MemoryEvent("cut", gap=7)])
    after = mem.view(0, *chunk_qkv(spec, 6, 0))
    assert held() == before_frames and after.visible == before.visible  # nothing dropped
    newest = lambda view: int(view.segments[-2].pos.max())  # noqa: E731  the newest cached frame's position
    distance = lambda view: int(view.q_pos.min()) - newest(view)  # noqa: E731
    assert distance(after) == distance(before) + 7
    if moved == "query":
        assert int(after.q_pos.min()) == int(before.q_pos.min()) + 7
    else:
        assert int(after.q_pos.min()) == int(before.q_pos.min())
    q, k, v = chunk_qkv(spec, 6, 0)
    for layer in range(spec.layers):
        mem.commit(layer, k, v, q)
    mem.end_chunk()
    st = mem.layers[0]
    held_now = (st.sink.frames if st.sink is not None else []) + st.recent.frames  # a young sink fills first
    assert held_now[-spec.chunk_frames:] == [6 + 7 + i for i in range(spec.chunk_frames)]
    assert mem.frames_committed == 7 * spec.chunk_frames and mem.stats()["skipped_frames"] == 7
    mem.begin_chunk(events=["cut"])
    assert mem.next_frame == mem.frames_committed + 7 + CUT_GAP_FRAMES
    mem.end_chunk()
    mem.reset()
    assert mem.next_frame == 0
