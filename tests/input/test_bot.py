import json

import pytest

from reverie.input.bot import PATROL, load_actions, main
from serving import ServerThread
from reverie.world.actions import DOOM_ACTIONS, UnknownActionError


def test_action_scripts(tmp_path):
    assert load_actions(None) == [DOOM_ACTIONS.index(a) for a in PATROL]
    assert load_actions(["forward", "turn_left+forward", 0, 26]) == [1, 7, 0, 26]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(["back", "noop"]))
    assert load_actions(path) == [2, 0]
    with pytest.raises(UnknownActionError):
        load_actions(["jump"])
    with pytest.raises(UnknownActionError):
        load_actions([27])
    with pytest.raises(ValueError, match="name or an index"):
        load_actions([1.5])
    path.write_text("{}")
    with pytest.raises(ValueError, match="non-empty JSON list"):
        load_actions(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_actions(tmp_path / "missing.json")


def test_bot_process_entry_point_prints_json(capsys):
    with ServerThread() as st:
        assert main(["--endpoint", st.endpoint, "--frames", "5", "--warmup", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 5 and result["fps"] > 0 and result["latency_p95_ms"] >= result["latency_p50_ms"]
