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
    assert {command_for_key(k, KM) for k in ("escape", "h", "p", "r", "return", "space", "f", "n", "g")} == set(COMMANDS)
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
    ({"controls": {"jump": ["j"]}}, "does not have"),
    ({"axes": {"yaw": "mouse_x"}}, "does not have"),
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


def test_a_models_declared_controls_make_its_keymap(tmp_path):
    from reverie.input.keymap import axes_from_motion, keymap_for
    from tinyworld import KEYS_MOUSE

    km = keymap_for(KEYS_MOUSE)
    assert km.controls["jump"] == ("space",) and km.controls["forward"] == ("w",)
    assert "turn_left" not in km.controls                       # the default file's Doom buttons do not apply
    assert command_for_key("space", km) is None and command_for_key("pause", km) == "pause"  # jump took space
    assert km.axes == {"yaw": "mouse_x", "pitch": "mouse_y"}
    assert KEYS_MOUSE.held(action_from_keys({"w", "space", "s"}, km, KEYS_MOUSE))[0] == ("jump",)  # w+s cancel
    axes = axes_from_motion({"mouse_x": 10.0, "mouse_y": 4.0}, km, KEYS_MOUSE, sensitivity=2.0)
    assert axes == pytest.approx({"yaw": 1.0, "pitch": -0.4})
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"controls": {"jump": ["j"]}, "axes": {"yaw": "mouse_y", "pitch": "mouse_x"},
                                "commands": {"quit": ["escape"]}}))
    mine = keymap_for(KEYS_MOUSE, path)
    assert mine.controls["jump"] == ("j",) and mine.controls["left"] == ("a",)
    assert axes_from_motion({"mouse_x": 10.0, "mouse_y": 4.0}, mine, KEYS_MOUSE)["yaw"] == pytest.approx(0.2)
    for data, match in (({"controls": {"turn_left": ["a"]}}, "does not have"),
                        ({"axes": {"yaw": "stick"}}, "source"),
                        ({"controls": {"jump": ["w"]}}, "bound to both")):
        path.write_text(json.dumps(data))
        with pytest.raises(KeymapError, match=match):
            keymap_for(KEYS_MOUSE, path)
