import numpy as np
import pytest

from reverie.world.actions import CONTROLS, DOOM_ACTIONS, NOOP, ActionSpace, Axis, UnknownActionError


def test_space_has_every_keyboard_chord_once():
    assert len(DOOM_ACTIONS) == 27
    assert DOOM_ACTIONS.names[0] == NOOP
    for name in ("noop", "forward", "back", "turn_left", "turn_right", "strafe_left", "strafe_right",
                 "forward+turn_left", "back+turn_right+strafe_left"):
        DOOM_ACTIONS.index(name)


@pytest.mark.parametrize("index", range(27))
def test_round_trip_index_name_controls(index):
    name = DOOM_ACTIONS.name(index)
    assert DOOM_ACTIONS.index(name) == index
    assert DOOM_ACTIONS.from_controls(DOOM_ACTIONS.controls(index)) == index
    buttons = DOOM_ACTIONS.button_vector(index)
    held = {c for c, b in zip(CONTROLS, buttons) if b}
    assert DOOM_ACTIONS.from_controls(held) == index


def test_names_are_order_insensitive_and_opposites_cancel():
    assert DOOM_ACTIONS.index("turn_left+forward") == DOOM_ACTIONS.index("forward+turn_left")
    assert DOOM_ACTIONS.from_controls({"forward", "back"}) == DOOM_ACTIONS.index("noop")
    assert DOOM_ACTIONS.from_controls({"forward", "back", "turn_left"}) == DOOM_ACTIONS.index("turn_left")


def test_bad_names_and_indices_raise_clearly():
    with pytest.raises(UnknownActionError, match="jump"):
        DOOM_ACTIONS.index("forward+jump")
    with pytest.raises(UnknownActionError, match="not in this action space"):
        DOOM_ACTIONS.index("forward+back")
    with pytest.raises(UnknownActionError):
        DOOM_ACTIONS.name(27)
    with pytest.raises(UnknownActionError, match="index"):
        DOOM_ACTIONS.coerce([1.0, 0, 0, 0, 0, 0])


def test_doom_order_is_pinned():
    """Models embed these indices and rollouts store them: the order must never move."""
    assert DOOM_ACTIONS.names[:8] == ("noop", "forward", "back", "turn_left", "turn_right", "strafe_left",
                                      "strafe_right", "forward+turn_left")
    assert DOOM_ACTIONS.names[-1] == "back+turn_right+strafe_right"


KEYS_MOUSE = ActionSpace(buttons=("forward", "back", "left", "right", "jump"),
                         axes=(Axis("yaw", -2.0, 2.0, source="mouse_x", scale=0.1),
                               Axis("pitch", -1.0, 1.0, source="mouse_y", scale=0.1)),
                         opposing=(("forward", "back"), ("left", "right")),
                         keys=(("forward", ("w",)), ("jump", ("space",))))


def test_vector_space_takes_every_form_of_an_action():
    s = KEYS_MOUSE
    assert s.dim == 7 and s.noop == (0.0,) * 7
    want = (1.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.0)
    assert s.coerce({"buttons": ["jump", "forward"], "axes": {"yaw": 0.5}}) == want
    assert s.coerce({"buttons": ["jump", "forward"], "axes": [0.5, 0.0]}) == want
    assert s.coerce(list(want)) == want
    assert s.coerce(np.array(want, np.float32)) == want
    assert s.coerce("jump+forward") == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    assert s.coerce(s.to_wire(want)) == want
    assert s.coerce({"buttons": ["forward", "back"]}) == s.noop          # opposing buttons cancel
    assert s.coerce({"axes": {"yaw": 99.0, "pitch": -99.0}})[5:] == (2.0, -1.0)   # clipped to range
    assert s.label(want) == "forward+jump yaw=+0.5"
    assert s.coerce_many(s.array([want, s.noop])) == [want, s.noop]
    assert s.tensor([want]).dtype.is_floating_point and tuple(s.tensor([want]).shape) == (1, 7)


@pytest.mark.parametrize("bad, match", [
    (3, "not action indices"), ({"buttons": ["fly"]}, "fly"), ({"axes": {"roll": 1}}, "roll"),
    ({"axes": {"yaw": float("nan")}}, "finite"), ({"axes": {"yaw": "1"}}, "finite"), ([1.0, 0.0], "7 values"),
    ({"buttons": "jump"}, "list"), ({"keys": []}, "'buttons' and 'axes'"), (True, "boolean"), (None, "index, a name"),
])
def test_vector_space_refuses_bad_actions_clearly(bad, match):
    with pytest.raises(UnknownActionError, match=match):
        KEYS_MOUSE.coerce(bad)
    with pytest.raises(TypeError, match="no fixed number"):
        len(KEYS_MOUSE)


def test_description_round_trips_and_bad_declarations_raise():
    for space in (DOOM_ACTIONS, KEYS_MOUSE):
        assert ActionSpace.from_description(space.describe()) == space
        assert ActionSpace.from_description(space.describe()).names == space.names
    for bad in ({}, {"buttons": ["a"], "axes": [{"name": "x"}]}, "keys", {"buttons": ["a"], "encoding": "one-hot"}):
        with pytest.raises(ValueError):
            ActionSpace.from_description(bad)
    with pytest.raises(ValueError, match="unique"):
        ActionSpace(buttons=("a", "a"))
    with pytest.raises(ValueError, match="opposing"):
        ActionSpace(buttons=("a", "b"), opposing=(("a", "c"),))
    with pytest.raises(ValueError, match="no axes"):
        ActionSpace(buttons=("a",), axes=(Axis("x"),), encoding="index")
    with pytest.raises(ValueError, match="too many"):
        ActionSpace(buttons=tuple(f"b{i}" for i in range(13)), encoding="index")
    with pytest.raises(ValueError, match="low < high"):
        Axis("x", 1.0, 1.0)
    with pytest.raises(ValueError, match="source"):
        Axis("x", source="joystick")


def test_index_space_of_unpaired_buttons_counts_every_subset():
    space = ActionSpace(buttons=("fire", "jump", "use"), encoding="index")
    assert len(space) == 8 and space.names[:4] == ("noop", "fire", "jump", "use")
    assert space.coerce({"buttons": ["use", "fire"]}) == space.index("fire+use")


def test_sampled_actions_are_in_the_space():
    import random

    rng = random.Random(0)
    assert {DOOM_ACTIONS.sample(rng) for _ in range(500)} == set(range(27))
    for _ in range(50):
        value = KEYS_MOUSE.sample(rng)
        assert KEYS_MOUSE.coerce(value) == value
