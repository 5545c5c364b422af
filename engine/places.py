"""The places a server can show a player who asks for a new scene without sending its frame: the real
game's starts (`Server(scene_frame=RealGamePlaces(...))`).

A place is a map name, or `MAP@SEED` (the start the seed picks: another room of the maze); None is the
next start of the home map (seeds 1, 2, ... in turn). A map's frames are made once, all `PLACE_SEEDS`
starts from one game, on a background thread, so the server's loop never waits for the game to start:
a place whose map is still being made is refused with `PlaceNotReady` (ask again in a second), the home
map's are started when the source is made with `prewarm` (`reverie serve` does), and a client can make
the server start the game at most once per registered map.
"""

from __future__ import annotations

import threading

#: start seeds a place may name (`MAP@SEED`)
PLACE_SEEDS = 16


class PlaceNotReady(RuntimeError):
    """The place's frames are still being made (or could not be made: the message says which)."""


class RealGamePlaces:
    """`place -> uint8 [H, W, 3]` for frames of `shape` = `(H, W, 3)`; an unknown map or a seed outside
    `[0, PLACE_SEEDS)` is a KeyError / ValueError, a map not made yet a `PlaceNotReady`."""

    def __init__(self, shape, home: str | None = None, *, prewarm: bool = False) -> None:
        from reverie.world.games.maps import DEFAULT_TRAIN_MAP, get_map

        self.shape, self.home = tuple(shape), home or DEFAULT_TRAIN_MAP
        get_map(self.home)
        self._starts: dict[str, list] = {}
        self._failed: dict[str, str] = {}
        self._making: set[str] = set()
        self._lock = threading.Lock()
        self._turn = 0
        if prewarm:
            self._make(self.home)

    def __call__(self, place: str | None):
        from reverie.world.games.maps import get_map

        if place is None:
            self._turn = self._turn % (PLACE_SEEDS - 1) + 1
            name, seed = self.home, self._turn
        else:
            name, _, seed_text = place.partition("@")
            seed = int(seed_text) if seed_text else 0  # ValueError: not a number
            if not 0 <= seed < PLACE_SEEDS:
                raise ValueError(f"a place's seed is in [0, {PLACE_SEEDS}), got {seed}")
        get_map(name)  # KeyError (UnknownMapError) for a map that is not registered
        with self._lock:
            if name in self._starts:
                return self._starts[name][seed]
            if name in self._failed:
                raise PlaceNotReady(f"the real game could not show {name}: {self._failed[name]}")
        self._make(name)
        raise PlaceNotReady(f"the frames of {name} are being made; ask again in a second")

    def ready(self, name: str) -> bool:
        with self._lock:
            return name in self._starts

    def _make(self, name: str) -> None:
        with self._lock:
            if name in self._making or name in self._starts:
                return
            self._making.add(name)
        threading.Thread(target=self._run, args=(name,), name=f"reverie-place-{name}", daemon=True).start()

    def _run(self, name: str) -> None:
        try:
            frames = real_game_starts(self.shape, name, PLACE_SEEDS)
        except Exception as exc:  # e.g. no real game installed: said to whoever asks for the place
            with self._lock:
                self._failed[name] = str(exc)
            return
        with self._lock:
            self._starts[name] = frames


def real_game_starts(shape, game_map: str, seeds: int) -> list:
    """The real game's first frames at `shape` for start seeds `0 .. seeds - 1`, from one game."""
    from reverie.world.games.doom import DoomConfig, DoomGame

    with DoomGame(DoomConfig(resolution=(shape[1], shape[0]), map=game_map)) as game:
        return [game.reset(seed).frame.copy() for seed in range(seeds)]
