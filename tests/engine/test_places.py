"""The server's places for a player's new scene: the real game's starts, made once per map, off the loop."""

import time

import numpy as np
import pytest

pytest.importorskip("vizdoom")

from reverie.engine.places import PLACE_SEEDS, PlaceNotReady, RealGamePlaces  # noqa: E402


def _wait(place, name, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not place.ready(name):
        assert time.monotonic() < deadline, f"{name} was never made"
        time.sleep(0.05)


def test_places_are_made_off_the_loop_once_per_map_and_unknown_places_are_refused(monkeypatch):
    import reverie.engine.places as places

    made = []
    real = places.real_game_starts
    monkeypatch.setattr(places, "real_game_starts", lambda *a: made.append(a[1]) or real(*a))
    place = RealGamePlaces((48, 64, 3), "maze")
    with pytest.raises(PlaceNotReady, match="being made"):   # nothing made yet: asking starts it, in the background
        place("maze@1")
    _wait(place, "maze")
    first, second = place(None), place(None)                 # the next starts of the home map, in turn
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8 and not np.array_equal(first, second)
    assert np.array_equal(place("maze@1"), first) and np.array_equal(place("maze@2"), second)
    assert made == ["maze"]                                  # one game for all of the map's starts
    for bad, error in (("nowhere", KeyError), ("maze@x", ValueError), (f"maze@{PLACE_SEEDS}", ValueError)):
        with pytest.raises(error):
            place(bad)


def test_a_map_the_game_cannot_show_is_refused_with_the_reason(monkeypatch):
    import reverie.engine.places as places

    def broken(*a):
        raise RuntimeError("no engine here")

    monkeypatch.setattr(places, "real_game_starts", broken)
    place = RealGamePlaces((48, 64, 3), "maze", prewarm=True)
    deadline = time.monotonic() + 10
    while True:
        with pytest.raises(PlaceNotReady) as exc:
            place(None)
        if "could not show" in str(exc.value) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "no engine here" in str(exc.value)
