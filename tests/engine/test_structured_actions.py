"""A model that declares keyboard + mouse controls (multi-hot buttons, two mouse axes) through the whole
engine: sessions, recordings that regenerate to identical frames, rollouts, action files and the server."""

import json

import numpy as np
import pytest

from reverie.engine.replay import regenerate
from reverie.engine.rollout import RolloutError, read_rollout
from reverie.engine.session import Session
from reverie.input.net import Connection, ServerError
from reverie.world.action_files import load_action_file
from reverie.world.actions import DOOM_ACTIONS
from serving import ServerThread, raw_socket, recv, seed_frame
from tinyworld import KEYS_MOUSE, TinyWorld, list_memory_factory
from reverie.engine import protocol as P

MOVES = [{"buttons": ["forward"], "axes": {"yaw": 0.37}}, {"buttons": ["forward", "jump"], "axes": [-1.3, 0.2]},
         {"buttons": ["left", "right"]}, "back+jump", {"axes": {"pitch": 0.123456789}}]


def keys_mouse_session(**kw):
    model = TinyWorld(action_space=KEYS_MOUSE)
    return Session(model, seed_frame(model.spec.frame_shape), memory_factory=list_memory_factory, **kw)


def test_axes_and_buttons_change_the_frames():
    frames = {}
    for name, action in (("still", KEYS_MOUSE.noop), ("yaw", {"axes": {"yaw": 1.5}}), ("jump", "jump")):
        frames[name] = keys_mouse_session().step(action).frame
    assert not np.array_equal(frames["still"], frames["yaw"]) and not np.array_equal(frames["still"], frames["jump"])
    assert keys_mouse_session().step(KEYS_MOUSE.noop).frame.tobytes() == frames["still"].tobytes()


def test_a_keys_and_mouse_recording_regenerates_to_identical_frames(tmp_path):
    session = keys_mouse_session(seed=5)
    session.step(MOVES[0])                                  # played before recording: its prefix
    session.start_recording(tmp_path / "rec")
    shown = [session.step(MOVES[i % len(MOVES)]).frame.copy() for i in range(12)]
    session.stop_recording()
    rollout = read_rollout(tmp_path / "rec")
    assert rollout.meta.action_space == KEYS_MOUSE and rollout.actions.shape == (13, KEYS_MOUSE.dim)
    assert rollout.action_names[2] == "forward+jump yaw=-1.3 pitch=+0.2"
    again = regenerate(rollout, TinyWorld(action_space=KEYS_MOUSE))
    assert np.array_equal(again, np.stack(shown)) and np.array_equal(again, rollout.frames[1:])
    with pytest.raises(ValueError, match="action space"):
        regenerate(rollout, TinyWorld())                    # a Doom model cannot replay it


def test_a_corrupt_action_row_is_named(tmp_path):
    session = keys_mouse_session()
    session.start_recording(tmp_path / "rec")
    session.step(MOVES[1])
    session.stop_recording()
    steps = tmp_path / "rec" / "steps.jsonl"
    rows = [json.loads(line) for line in steps.read_text().splitlines()]
    for bad in ([1.0] * 3, [2.0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 9.0, 0], 3):
        rows[1]["action"] = bad
        steps.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with pytest.raises(RolloutError, match="line 2"):
            read_rollout(tmp_path / "rec", verify=False)


def test_action_files_take_structured_actions(tmp_path):
    path = tmp_path / "moves.json"
    path.write_text(json.dumps([{"buttons": ["forward"], "axes": {"yaw": 0.5}, "repeat": 3}, "jump", [0, 0, 0, 0, 0, 0, 1]]))
    actions = load_action_file(path, KEYS_MOUSE)
    assert len(actions) == 5 and actions[0] == (1.0, 0, 0, 0, 0, 0.5, 0.0) and actions[4][-1] == 1.0
    path.write_text(json.dumps(["forward", {"buttons": ["fly"]}]))
    with pytest.raises(ValueError, match="step 1.*fly"):
        load_action_file(path, KEYS_MOUSE)
    path.write_text(json.dumps([{"axes": {"yaw": 1}}]))
    with pytest.raises(ValueError, match="unknown axis"):
        load_action_file(path, DOOM_ACTIONS)


def test_the_server_serves_structured_actions_and_refuses_bad_ones():
    with ServerThread(model=TinyWorld(action_space=KEYS_MOUSE)) as st:
        with Connection(st.endpoint) as conn:
            assert conn.action_space == KEYS_MOUSE
            for move in MOVES:
                conn.send_action(move)
                deadline = 50
                while conn.in_flight and deadline:
                    frame = conn.poll(100)
                    deadline -= 1
            assert frame is not None and frame.header.action == KEYS_MOUSE.to_wire(KEYS_MOUSE.coerce(MOVES[-1]))
            with pytest.raises(ValueError, match="not action indices"):
                conn.send_action(3)                          # caught on the client before it is sent
        bad = raw_socket(st.endpoint)
        bad.send_multipart([P.encode(P.Hello())])
        assert isinstance(recv(bad)[0], P.Welcome)
        for action in (3, {"buttons": ["fly"]}, {"axes": {"yaw": float("inf")}}, [1.0] * 3, {"buttons": "jump"}):
            bad.send_multipart([P.encode(P.Action(seq=1, action=action))])
            reply = recv(bad)[0]
            assert isinstance(reply, P.Error) and reply.code == "bad_field", action
        bad.close()
        with Connection(st.endpoint) as conn:               # the server kept serving
            conn.send_action({"buttons": ["jump"]})
            assert conn.poll(5000) is not None
