import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vizdoom")

from reverie.engine.cli import main
from reverie.engine.rollout import read_rollout
from reverie.world.actions import DOOM_ACTIONS

ACTION_FILE = Path(__file__).resolve().parents[3] / "examples" / "actions" / "out_and_back.json"


def _inspect_json(capsys, path):
    capsys.readouterr()
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_go_and_return_record_then_inspect(tmp_path, capsys):
    out = tmp_path / "D"
    assert main(["record", "--game", "doom", "--driver", "go-and-return", "--steps", "200", "--out", str(out)]) == 0
    s = _inspect_json(capsys, out)
    assert s["steps"] == 200 and s["frame_shape"] == [48, 64, 3] and s["source"] == "game"
    assert len(s["actions"]) == 200 and s["actions"][0] == "noop" and set(s["actions"]) <= set(DOOM_ACTIONS.names)
    assert s["complete"] and s["preview"] and (out / "preview.mp4").stat().st_size > 1000
    r = read_rollout(out)
    loop = r.meta.config["driver"]["loops"][0]
    start, end = r.poses[loop["start_step"]], r.poses[loop["end_step"]]
    assert np.hypot(*(end[:2] - start[:2])) < 8.0


def test_same_action_file_and_seed_give_the_same_frames(tmp_path, capsys):
    shas = []
    for name in ("a", "b"):
        assert main(["record", "--game", "doom", "--map", "freedoom2-map01", "--actions", str(ACTION_FILE),
                     "--seed", "3", "--no-preview", "--out", str(tmp_path / name)]) == 0
        s = _inspect_json(capsys, tmp_path / name)
        shas.append(s["frames_sha256"])
        assert s["actions"] == json.loads(ACTION_FILE.read_text())
        assert s["steps"] == len(s["actions"])
    assert shas[0] == shas[1]
    # the recorded actions, played back, reproduce the rollout
    (tmp_path / "replayed.json").write_text(json.dumps(s["actions"]))
    assert main(["record", "--map", "freedoom2-map01", "--actions", str(tmp_path / "replayed.json"), "--seed", "3",
                 "--no-preview", "--out", str(tmp_path / "c")]) == 0
    assert _inspect_json(capsys, tmp_path / "c")["frames_sha256"] == shas[0]


def test_episodes_write_one_folder_each(tmp_path, capsys):
    assert main(["record", "--driver", "random", "--steps", "30", "--episodes", "2", "--seed", "5",
                 "--no-preview", "--out", str(tmp_path / "set")]) == 0
    eps = sorted(p.name for p in (tmp_path / "set").iterdir())
    assert eps == ["ep000", "ep001"]
    seeds = [_inspect_json(capsys, tmp_path / "set" / e)["seed"] for e in eps]
    assert seeds == [5, 6]


def test_record_errors_are_clear(tmp_path, capsys):
    assert main(["record", "--map", "nowhere", "--steps", "5", "--out", str(tmp_path / "x")]) == 2
    assert "unknown map 'nowhere'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('["noop", "fly"]')
    assert main(["record", "--actions", str(bad), "--out", str(tmp_path / "y")]) == 2
    assert "step 1" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    assert main(["record", "--steps", "5", "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_policy_is_a_deprecated_alias_of_driver(tmp_path, capsys):
    assert main(["record", "--policy", "random", "--steps", "5", "--no-preview", "--out", str(tmp_path / "p")]) == 0
    assert "--policy is deprecated, use --driver" in capsys.readouterr().err
    assert read_rollout(tmp_path / "p").meta.config["driver"]["name"] == "random"


def test_inspect_rejects_a_corrupt_rollout(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["record", "--driver", "random", "--steps", "20", "--no-preview", "--out", str(out)]) == 0
    shutil.copy(out / "steps.jsonl", tmp_path / "steps.bak")
    with open(out / "steps.jsonl", "a") as f:
        f.write("garbage\n")
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 1
    err = capsys.readouterr().err
    assert "reverie inspect:" in err and "steps.jsonl" in err
    assert main(["inspect", str(tmp_path / "missing")]) == 1
