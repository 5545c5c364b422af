import pytest

from reverie.world.actions import CONTROLS, DOOM_ACTIONS, NOOP, ActionSpace, UnknownActionError


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
    buttons = DOOM_ACTIONS.buttons(index)
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
    with pytest.raises(ValueError):
        ActionSpace(("forward",))
