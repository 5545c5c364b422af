import json

import pytest

from reverie.input.bot import PATROL, load_actions, main, patrol
from serving import ServerThread
from reverie.world.action_files import parse_actions
from reverie.world.actions import DOOM_ACTIONS, ActionSpace, Axis


def test_action_scripts(tmp_path):
    assert load_actions(None) is None                                  # the bot plays patrol(space)
    assert parse_actions(load_actions(["forward", "turn_left+forward", 0, 26])) == [1, 7, 0, 26]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(["back", {"buttons": ["forward"], "repeat": 2}, "noop"]))
    assert parse_actions(load_actions(path)) == [2, 1, 1, 0]
    for bad, match in ((["jump"], "step 0.*jump"), ([27], "outside"), ([1.5], "got float"),
                       ([{"buttons": ["back"], "repeat": 0}], "repeat")):
        with pytest.raises(ValueError, match=match):
            parse_actions(bad)
    path.write_text("{}")
    with pytest.raises(ValueError, match="non-empty JSON list"):
        load_actions(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_actions(tmp_path / "missing.json")


def test_patrol_presses_every_control_of_any_space():
    assert patrol(DOOM_ACTIONS) == [DOOM_ACTIONS.index(a) for a in PATROL]
    space = ActionSpace(buttons=("forward", "jump"), axes=(Axis("yaw", -2.0, 2.0, source="mouse_x"),))
    script = patrol(space)
    assert script == [space.coerce(a) for a in script]                 # every step is a valid value
    assert {b for a in script for b in space.held(a)[0]} == {"forward", "jump"}
    yaws = [space.held(a)[1][0] for a in script]
    assert min(yaws) == -2.0 and max(yaws) == 2.0


def test_bot_process_entry_point_prints_json(capsys):
    with ServerThread() as st:
        assert main(["--endpoint", st.endpoint, "--frames", "5", "--warmup", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 5 and result["fps"] > 0 and result["latency_p95_ms"] >= result["latency_p50_ms"]


def test_a_bot_changes_the_scene_every_n_frames_and_the_recording_regenerates(tmp_path):
    import numpy as np

    from reverie.engine.replay import regenerate
    from reverie.engine.rollout import read_rollout
    from reverie.input.bot import run_bot
    from reverie.input.net import Connection
    from tinyworld import list_memory_factory

    places = iter([np.full((16, 16, 3), v, np.uint8) for v in (40, 120, 220)])
    with ServerThread(record_dir=str(tmp_path), scene_frame_fn=lambda place: next(places)) as st:
        with Connection(st.endpoint, record=True, seed=3) as c:
            result = run_bot(c, 10, [1, 7], scene_every=4, scene_handling="cut")
        model = st.model
    assert result["frames"] == 10 and result["scenes"] == 2 and not result["errors"]
    r = read_rollout(next(tmp_path.iterdir()))
    assert [e["scene"] for e in r.extras if e and "scene" in e] == ["cut", "cut"]
    assert np.array_equal(regenerate(r, model, memory_factory=list_memory_factory), r.frames[1:])
