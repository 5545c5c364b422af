"""Latent time is not frame time: a model whose latent covers 4 frames, generating 3 latents per chunk (12
frames), as Matrix-Game 2.0 does. Memory counts latent frames; frames go out one per step."""

import numpy as np
import pytest

from reverie.engine.replay import regenerate
from reverie.engine.rollout import read_rollout
from reverie.engine.session import Session
from reverie.input.bot import run_bot
from reverie.input.net import Connection
from serving import ServerThread, seed_frame
from tinyworld import KEYS_MOUSE, TinyWorld, list_memory_factory


def chunked(**kw):
    return TinyWorld(chunk_frames=3, frames_per_latent=4, action_space=KEYS_MOUSE, **kw)


def session(model, **kw):
    return Session(model, seed_frame(model.spec.frame_shape), memory_factory=list_memory_factory, **kw)


def test_a_chunk_is_twelve_frames_from_three_latents_handed_out_one_per_step():
    model = chunked()
    assert model.spec.frames_per_chunk == 12 and model.spec.actions_per_chunk == 12
    s = session(model)
    assert s.memory.frames_committed == 3                  # the seed frame fills one chunk of latents
    frames = [s.step({"buttons": ["forward"]}) for _ in range(24)]
    assert [f.index for f in frames] == list(range(24))
    assert s.memory.frames_committed == 9 and s.chunk_index == 2   # two chunks of 3 latents
    ramp = [int(f.frame.astype(int).sum()) for f in frames[:4]]
    assert ramp == sorted(ramp) and ramp[0] < ramp[3]      # the decoder's 4 frames of one latent differ
    chunk = s.generate([KEYS_MOUSE.noop] * 12)
    assert chunk.frames.shape == (12, 16, 16, 3) and chunk.latents.shape[0] == 3 and len(chunk.poses) == 12
    with pytest.raises(ValueError, match="12 actions"):
        s.generate([KEYS_MOUSE.noop] * 3)


def test_aggregate_binding_gives_one_action_per_latent():
    model = chunked(action_binding="aggregate")
    assert model.spec.actions_per_chunk == 3
    moves = [{"buttons": ["forward"], "axes": {"yaw": 1.0}}] + [{"buttons": ["back"]}] * 3 + ["jump"] * 8
    bound = model.spec.bind_actions(KEYS_MOUSE.coerce_many(moves))
    assert bound.shape == (3, KEYS_MOUSE.dim)
    assert KEYS_MOUSE.held(tuple(bound[0].tolist())) == ((), (0.25, 0.0))   # forward and back cancel
    assert KEYS_MOUSE.held(tuple(bound[1].tolist()))[0] == ("jump",)
    s = session(model)
    assert s.generate(moves).frames.shape == (12, 16, 16, 3)


def test_observe_takes_whole_chunks_of_frames():
    model = chunked()
    s = session(model)
    frames = np.stack([seed_frame((16, 16, 3))] * 12)
    s.observe(frames, [KEYS_MOUSE.noop] * 12)
    assert s.memory.frames_committed == 6
    with pytest.raises(ValueError, match="multiple of 12"):
        s.observe(frames[:4], [KEYS_MOUSE.noop] * 4)


def test_a_chunked_recording_regenerates_and_the_server_sends_frames_one_by_one(tmp_path):
    model = chunked()
    s = session(model, seed=3)
    s.start_recording(tmp_path / "rec")
    moves = [{"buttons": ["forward"], "axes": {"yaw": 0.1 * (i % 5)}} for i in range(30)]
    shown = [s.step(m).frame.copy() for m in moves]
    s.stop_recording()
    rollout = read_rollout(tmp_path / "rec")
    assert np.array_equal(regenerate(rollout, chunked()), np.stack(shown))
    with ServerThread(model=chunked(), budget_bytes=100_000) as st:
        with Connection(st.endpoint) as conn:
            assert conn.welcome.chunk_frames == 3 and conn.welcome.frames_per_latent == 4
            seen = []
            result = run_bot(conn, 24, None, on_frame=lambda f: seen.append(f.header.index))
        assert result["frames"] == 24 and seen == sorted(seen) and len(set(seen)) == len(seen)


def test_reverie_rollout_runs_a_chunked_keys_and_mouse_model(tmp_path, capsys):
    import json

    from reverie.engine.cli import main
    from tinyworld import build_chunked

    s = session(build_chunked())
    s.start_recording(tmp_path / "ctx")
    for i in range(24):
        s.step({"buttons": ["forward"], "axes": {"yaw": 0.1}})
    s.stop_recording()
    moves = tmp_path / "moves.json"
    moves.write_text(json.dumps([{"buttons": ["jump"], "axes": {"pitch": -0.5}, "repeat": 20}, "left"]))
    args = ["rollout", "--model", "tinyworld:build_chunked", "--context", str(tmp_path / "ctx"), "--context-frames",
            "13", "--actions", str(moves), "--out", str(tmp_path / "out"), "--no-preview", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["generated"] == 12 and summary["steps"] == 25    # 21 actions: one whole chunk of 12
    out = read_rollout(tmp_path / "out")
    assert out.meta.action_space == KEYS_MOUSE and out.action_names[13] == "jump pitch=-0.5"
