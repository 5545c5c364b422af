import numpy as np
import pytest
import torch

from reverie.engine.session import Session
from serving import seed_frame
from tinyworld import BudgetError, TinyWorld, list_memory_factory

torch.set_num_threads(1)


def make(model=None, **kw):
    model = model or TinyWorld()
    kw.setdefault("memory_factory", list_memory_factory)
    return Session(model, seed_frame(model.spec.frame_shape), **kw)


def play(session, actions):
    return np.stack([session.step(a).frame for a in actions])


def test_step_returns_owned_uint8_frames_and_poses():
    s = make(seed=1)
    r = s.step(1)
    assert r.frame.dtype == np.uint8 and r.frame.shape == (16, 16, 3) and r.frame.flags.c_contiguous
    assert r.index == 0 and r.action == 1 and len(r.pose) == 3 and r.t_end_ns >= r.t_start_ns
    assert s.step(2).index == 1 and s.memory.frames_committed == 3  # seed frame + two generated
    assert s.history == [1, 2]


def test_same_seed_same_actions_same_frames_and_reset_repeats_them():
    actions = [0, 1, 7, 3, 3, 26, 5]
    a, b = make(seed=4), make(seed=4)
    fa = play(a, actions)
    assert np.array_equal(fa, play(b, actions))
    a.reset()
    assert np.array_equal(fa, play(a, actions))
    a.reset(seed=5)
    assert not np.array_equal(fa, play(a, actions))


def test_actions_change_the_frames():
    assert not np.array_equal(play(make(), [1] * 4), play(make(), [2] * 4))


def test_chunked_model_hands_out_frames_one_per_step():
    s = make(TinyWorld(chunk_frames=3))
    frames = play(s, [1] * 7)
    assert frames.shape == (7, 16, 16, 3) and s.chunk_index == 3 and s.frame_index == 7


def test_bad_input_is_refused_clearly():
    model = TinyWorld()
    with pytest.raises(ValueError, match="seed frame"):
        Session(model, np.zeros((8, 8, 3), np.uint8), memory_factory=list_memory_factory)
    with pytest.raises(ValueError, match="outside"):
        make(model).step(27)


def test_live_policy_and_budget_switch_recache_recent_frames():
    s = make()
    play(s, [1] * 10)
    per_frame = s.spec.kv_bytes_per_frame
    s.rebuild_memory(policy="window", budget_bytes=4 * per_frame)
    assert s.policy == "window" and s.memory.kv_bytes() <= 4 * per_frame and s.memory.frames_committed > 0
    assert not s.replayable
    play(s, [2] * 5)
    assert s.memory.kv_bytes() <= 4 * per_frame
    with pytest.raises(BudgetError):          # an impossible budget keeps the old memory
        s.rebuild_memory(budget_bytes=1)
    assert s.budget_bytes == 4 * per_frame and s.step(0).frame.shape == (16, 16, 3)


def test_stats_are_json_like():
    s = make(policy="window", budget_bytes=10**6)
    s.step(0)
    st = s.stats()
    assert st["policy"] == "window" and st["memory"]["kv_bytes"] == s.memory.kv_bytes() and st["frame_index"] == 1


@pytest.mark.parametrize("policy", ["window", "dual"])
def test_sessions_on_the_real_memory_are_deterministic(policy):
    memory = pytest.importorskip("memory")
    model = TinyWorld()
    budget = 12 * model.spec.kv_bytes_per_frame
    factory = lambda spec, pol, b: memory.MemoryManager.create(spec, policy=pol, budget_bytes=b)  # noqa: E731
    runs = [play(make(model, policy=policy, budget_bytes=budget, seed=2, memory_factory=factory), [1, 3, 7, 0] * 5)
            for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])


def test_a_session_records_itself_off_the_hot_path_and_the_recording_regenerates(tmp_path):
    from reverie.engine.replay import regenerate
    from reverie.engine.rollout import read_rollout

    s = make(seed=9)
    play(s, [1, 1])
    rec = s.start_recording(tmp_path / "r")
    assert s.start_recording(tmp_path / "other") is rec   # already recording
    frames = play(s, [3, 7, 0, 26, 5])
    assert s.stop_recording() is rec and s.recorder is None and rec.summary["steps"] == 6
    r = read_rollout(tmp_path / "r")
    assert r.complete and np.array_equal(r.frames[1:], frames) and r.actions.tolist() == [0, 3, 7, 0, 26, 5]
    assert r.meta.config["prefix_actions"] == [1, 1] and r.meta.config["regenerable"]
    assert [e["kv_bytes"] for e in r.extras[1:]] == [s.spec.kv_bytes_per_frame * n for n in range(4, 9)]
    assert np.array_equal(regenerate(r, TinyWorld(), memory_factory=list_memory_factory), frames)
    s.start_recording(tmp_path / "r2")
    s.set_seed(1)                                          # a live event: the recording says it
    s.step(0)
    s.stop_recording()
    assert read_rollout(tmp_path / "r2").meta.config["regenerable"] is False


def test_pose_integrates_egocentric_deltas_in_the_current_heading():
    s = make(seed=1)
    s.pose = (10.0, 5.0, 90.0)  # facing +y
    # 2 forward, 1 left (which is -x when facing +y), then turn 90 degrees left
    poses = s._integrate(torch.tensor([[2.0, 1.0, 90.0], [3.0, 0.0, 0.0]]), 2)
    assert poses[0] == pytest.approx((9.0, 7.0, 180.0))
    assert poses[1] == pytest.approx((6.0, 7.0, 180.0))  # facing -x now
    assert s.pose == poses[1]


# --- the hooks the benches drive sessions with ---------------------------------------------------------------
def test_generate_is_one_chunk_of_per_frame_actions_and_step_hands_out_the_same_frames():
    model = TinyWorld(chunk_frames=3)
    chunk = make(model, seed=3).generate([1, 7, 26])
    assert chunk.frames.shape == (3, 16, 16, 3) and chunk.latents.shape[0] == 3 and chunk.chunk_index == 0
    assert chunk.actions.tolist() == [1, 7, 26] and len(chunk.poses) == 3
    held = make(model, seed=3)
    assert np.array_equal(held.generate([5, 5, 5]).frames, play(make(model, seed=3), [5, 5, 5]))
    assert not held.replayable and held.history == [] and held.chunk_index == 1
    with pytest.raises(ValueError, match="3 actions"):
        held.generate([1])


def test_predict_samples_without_committing_then_observe_commits_the_real_frames():
    s, ref = make(seed=2), make(seed=2)
    committed, pose = s.memory.frames_committed, s.pose
    guess = s.predict([4])
    assert s.memory.frames_committed == committed and s.pose == pose and s.chunk_index == 0
    assert np.array_equal(guess.frames[0], ref.step(4).frame)   # the frame `step` would have made
    assert not np.array_equal(s.predict([4], chunk_index=9).frames, guess.frames)  # other noise
    s.observe(guess.frames, [4])
    assert s.memory.frames_committed == committed + 1 and s.frame_clock == 2


def test_pose_source_gives_the_memory_its_pose_at_each_frame_clock():
    seen = []

    class PoseTap:
        def __init__(self, memory):
            self.memory = memory

        def begin_chunk(self, pose=None, events=()):
            seen.append(pose)
            self.memory.begin_chunk(pose=pose, events=events)

        def __getattr__(self, name):
            return getattr(self.memory, name)

    s = make(TinyWorld(chunk_frames=2), memory_factory=lambda *a: PoseTap(list_memory_factory(*a)),
             pose_source=lambda t: (float(t), 0.0, 0.0))
    s.observe(np.stack([seed_frame((16, 16, 3))] * 2), [1, 1])
    play(s, [3, 3])
    s.generate([2, 2])
    assert seen == [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (3.0, 0.0, 0.0), (5.0, 0.0, 0.0)]
    assert s.frame_clock == 7 and s.pose != (5.0, 0.0, 0.0)  # the session still dead-reckons its own pose


def test_a_session_started_mid_episode_records_its_seed_action_and_regenerates(tmp_path):
    from reverie.engine.replay import regenerate
    from reverie.engine.rollout import read_rollout

    s = make(seed=6, seed_action=7)
    assert not np.array_equal(play(make(seed=6, seed_action=7), [1, 2]), play(make(seed=6), [1, 2]))
    s.start_recording(tmp_path / "r")
    frames = play(s, [1, 2, 3])
    s.stop_recording()
    r = read_rollout(tmp_path / "r")
    assert r.actions.tolist() == [7, 1, 2, 3]
    assert np.array_equal(regenerate(r, TinyWorld(), memory_factory=list_memory_factory, out=tmp_path / "again"), frames)
    again = read_rollout(tmp_path / "again")
    assert again.complete and np.array_equal(again.frames, r.frames) and again.actions.tolist() == [7, 1, 2, 3]


def test_fork_copies_the_state_and_shares_the_model():
    s = make(seed=5)
    play(s, [1, 3])
    f = s.fork()
    assert f.model is s.model and f.memory is not s.memory and f.chunk_index == s.chunk_index
    ahead = play(f, [7, 7, 0])
    assert s.memory.frames_committed == 3 and f.memory.frames_committed == 6
    assert np.array_equal(play(s, [7, 7, 0]), ahead)


def _real_memory(spec, policy, budget_bytes):
    from reverie.memory import MemoryManager

    return MemoryManager.create(spec, policy=policy, budget_bytes=budget_bytes)


@pytest.mark.parametrize("handling", ["flush", "cut", "recache"])
def test_a_new_scene_is_handled_as_asked_and_its_recording_regenerates(tmp_path, handling):
    from reverie.engine.replay import regenerate
    from reverie.engine.rollout import read_rollout
    from reverie.memory.events import CUT_GAP_FRAMES
    from reverie.memory.footprint import RECACHE_CHUNKS

    model = TinyWorld()
    s = make(model, policy="window", budget_bytes=12 * model.spec.kv_bytes_per_frame, seed=3,
             memory_factory=_real_memory)
    s.start_recording(tmp_path / "r")
    before = play(s, [1, 3, 7, 0])                      # frames 1-4 after the seed frame 0
    other = np.full(model.spec.frame_shape, 200, np.uint8)
    old = s.memory
    assert s.scene(other, handling, pose=(5.0, 6.0, 90.0)) == handling
    mem = s.memory.layers[0]
    if handling == "flush":                             # the sink and the new scene's frame
        assert mem.sink.frames == [0] and mem.recent.frames == [5]
    elif handling == "cut":                             # everything, and the new frame a gap away
        assert mem.recent.frames == [1, 2, 3, 4, 5 + CUT_GAP_FRAMES]
    else:                                               # a new memory: the last chunks again, then the frame
        kept = min(RECACHE_CHUNKS, 5)
        assert s.memory is not old and mem.sink.frames + mem.recent.frames == list(range(kept + 1))
    assert s.pose == (5.0, 6.0, 90.0) and s.frame_index == 4 and s.replayable
    after = play(s, [1, 1, 2])
    s.stop_recording()
    r = read_rollout(tmp_path / "r")
    assert r.extras[5] == {"scene": handling} and np.array_equal(r.frames[5], other) and r.meta.config["regenerable"]
    assert np.array_equal(regenerate(r, TinyWorld(), memory_factory=_real_memory),
                          np.concatenate([before, other[None], after]))


def test_flush_and_cut_scenes_play_differently_and_an_unrecorded_scene_is_not_replayable():
    model = TinyWorld()
    runs = {}
    for handling in ("flush", "cut"):
        s = make(model, policy="window", budget_bytes=12 * model.spec.kv_bytes_per_frame, seed=3,
                 memory_factory=_real_memory)
        play(s, [1, 3, 7, 0])
        default = None if handling == "flush" else handling  # flush: the policy's own choice
        assert s.scene(np.full(model.spec.frame_shape, 200, np.uint8), default) == handling
        runs[handling] = play(s, [1, 1, 2])
        assert not s.replayable
    assert not np.array_equal(runs["flush"], runs["cut"])


def test_a_scene_refuses_bad_input_and_keeps_the_session():
    s = make(seed=1)
    play(s, [1])
    frame = np.zeros(s.spec.frame_shape, np.uint8)
    with pytest.raises(ValueError, match="scene frame"):
        s.scene(frame[:8])
    with pytest.raises(ValueError, match="unknown scene handling"):
        s.scene(frame, "teleport")
    with pytest.raises(ValueError, match="pose"):
        s.scene(frame, "flush", pose=(1.0, float("nan"), 0.0))
    assert s.replayable and s.step(2).index == 1        # nothing changed
    assert s.scene(frame) == "flush"                    # a memory without a policy: flush


def test_a_recached_scene_builds_its_memory_outside_inference_mode():
    """The prefault thread writes into the archive outside inference mode: its buffers must be normal tensors."""
    model = TinyWorld()
    s = make(model, policy="dual", budget_bytes=12 * model.spec.kv_bytes_per_frame, memory_factory=_real_memory)
    play(s, [1, 3])
    s.scene(np.full(model.spec.frame_shape, 9, np.uint8), "recache")
    assert s.memory.archive is not None and not s.memory.archive.k.is_inference()
    play(s, [1])


def test_a_scene_event_is_handled_as_the_new_frame_is_committed_at_the_new_pose():
    """The memory sees the flush or cut in the chunk that commits the new frame (no empty chunk before
    it), so retrieval, due again after an event, runs at the new scene's pose."""
    model = TinyWorld()

    class Tap:
        def __init__(self, inner):
            self.inner, self.begins = inner, []

        def begin_chunk(self, pose=None, events=()):
            self.begins.append((pose, tuple(events)))
            return self.inner.begin_chunk(pose=pose, events=events)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    for handling in ("flush", "cut"):
        s = make(model, policy="dual", budget_bytes=12 * model.spec.kv_bytes_per_frame,
                 memory_factory=lambda spec, pol, b: Tap(_real_memory(spec, pol, b)))
        play(s, [1, 3])
        committed = s.memory.frames_committed
        s.scene(np.full(model.spec.frame_shape, 9, np.uint8), handling, pose=(40.0, -8.0, 90.0))
        pose, events = s.memory.begins[-1]
        assert pose == (40.0, -8.0, 90.0) and [e.kind for e in events] == [handling]
        assert s.memory.frames_committed == committed + model.spec.chunk_frames
        assert sum(1 for _, ev in s.memory.begins if ev) == 1
