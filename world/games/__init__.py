"""Ground-truth games: the real Doom (ViZDoom) used for training data, reference frames and revisits.

    from reverie.world.actions import DOOM_ACTIONS
    from reverie.world.games import DoomConfig, DoomGame, make_driver
    with DoomGame(DoomConfig(map="maze")) as game:        # vizdoom is imported when the game starts
        obs = game.reset(seed=0)                          # obs.frame uint8 [48, 64, 3], obs.pose (x, y, deg)
        obs = game.step(DOOM_ACTIONS.index("forward"))

Maps are registered in `world.games.maps.MAPS`, exploration drivers (scripted
players that make the rollouts) in `world.games.drivers.DRIVERS`.
"""

from reverie.world.games.doom import DoomConfig, DoomGame, GameError, Observation
from reverie.world.games.drivers import DRIVERS, Driver, make_driver
from reverie.world.games.maps import DEFAULT_EVAL_MAP, DEFAULT_TRAIN_MAP, MAPS, MapSpec, UnknownMapError, get_map

__all__ = ["DEFAULT_EVAL_MAP", "DEFAULT_TRAIN_MAP", "DRIVERS", "MAPS", "DoomConfig", "DoomGame", "Driver", "GameError",
           "MapSpec", "Observation", "UnknownMapError", "get_map", "make_driver"]
