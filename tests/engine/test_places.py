"""The server's places for a player's new scene: the real game's starts, made once per map."""

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("vizdoom")

from reverie.engine.commands.serve import PLACE_SEEDS, place_source  # noqa: E402


def test_places_are_the_starts_of_a_map_made_once_and_unknown_places_are_refused(monkeypatch):
    import reverie.engine.commands.serve as serve

    starts = []
    real = serve.real_game_starts
    monkeypatch.setattr(serve, "real_game_starts", lambda *a: starts.append(a[1]) or real(*a))
    place = place_source(SimpleNamespace(spec=SimpleNamespace(frame_shape=(48, 64, 3))), "maze")
    first, second = place(None), place(None)                       # the next starts of the home map, in turn
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8 and not np.array_equal(first, second)
    assert np.array_equal(place("maze@1"), first) and np.array_equal(place("maze@2"), second)
    assert starts == ["maze"]                                      # one game for all of the map's starts
    for bad, error in (("nowhere", KeyError), ("maze@x", ValueError), (f"maze@{PLACE_SEEDS}", ValueError)):
        with pytest.raises(error):
            place(bad)
