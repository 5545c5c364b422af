import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reverie.input.keymap import COMMANDS, Keymap, KeymapError, action_from_keys, command_for_key, held_controls, load_keymap
from reverie.world.actions import DOOM_ACTIONS

KM = load_keymap()


@pytest.mark.parametrize("keys, name", [
    ((), "noop"), (("w",), "forward"), (("up",), "forward"), (("s",), "back"), (("a",), "turn_left"),
    (("right",), "turn_right"), (("q",), "strafe_left"), (("e",), "strafe_right"),
    (("w", "a"), "forward+turn_left"), (("up", "d", "e"), "forward+turn_right+strafe_right"),
    (("w", "s"), "noop"), (("w", "s", "a"), "turn_left"), (("w", "up"), "forward"), (("x", "f1"), "noop"),
])
def test_default_keymap_maps_held_keys_to_actions(keys, name):
    assert DOOM_ACTIONS.name(action_from_keys(keys, KM)) == name


def test_commands_are_bound():
    assert {command_for_key(k, KM) for k in ("escape", "h", "p", "r", "return", "space", "f")} == set(COMMANDS)
    assert command_for_key("w", KM) is None


@given(st.sets(st.sampled_from(list(KM.keys) + ["x", "z", "f2"])))
def test_any_key_set_gives_a_valid_action_made_of_the_held_controls(keys):
    action = action_from_keys(keys, KM)
    controls = set(DOOM_ACTIONS.controls(action))
    assert controls <= held_controls(keys, KM)
    assert not {"forward", "back"} <= controls and not {"turn_left", "turn_right"} <= controls


def test_custom_keymap_file(tmp_path):
    path = tmp_path / "arrows.json"
    path.write_text(json.dumps({"name": "arrows", "controls": {"forward": ["I"], "turn_left": ["j"]},
                                "commands": {"quit": ["k"]}}))
    km = load_keymap(path)
    assert km.name == "arrows" and DOOM_ACTIONS.name(action_from_keys({"i", "j"}, km)) == "forward+turn_left"
    assert action_from_keys({"w"}, km) == 0 and command_for_key("k", km) == "quit"


@pytest.mark.parametrize("data, match", [
    ({"controls": {"jump": ["j"]}}, "unknown control"),
    ({"commands": {"fly": ["j"]}}, "unknown command"),
    ({"controls": {"forward": ["w"], "back": ["w"]}}, "bound to both"),
    ({"controls": {"forward": "w"}}, "list of key names"),
    ([], "JSON object"),
])
def test_bad_keymaps_are_clear_errors(tmp_path, data, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(KeymapError, match=match):
        load_keymap(path)


def test_missing_or_broken_keymap_file(tmp_path):
    with pytest.raises(KeymapError, match="does not exist"):
        load_keymap(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(KeymapError, match="not valid JSON"):
        load_keymap(tmp_path / "x.json")
    assert isinstance(KM, Keymap)
