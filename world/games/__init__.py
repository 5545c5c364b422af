"""Ground-truth games: the real Doom (ViZDoom) used for training data, reference frames and revisits.

    from world.actions import DOOM_ACTIONS
    from world.games import DoomConfig, DoomGame, make_policy
    with DoomGame(DoomConfig(map="maze")) as game:        # vizdoom is imported when the game starts
        obs = game.reset(seed=0)                          # obs.frame uint8 [48, 64, 3], obs.pose (x, y, deg)
        obs = game.step(DOOM_ACTIONS.index("forward"))

Maps are registered in `world.games.maps.MAPS`, exploration policies in `world.games.policies.POLICIES`.
"""

from world.games.doom import DoomConfig, DoomGame, GameError, Observation
from world.games.maps import DEFAULT_EVAL_MAP, DEFAULT_TRAIN_MAP, MAPS, MapSpec, UnknownMapError, get_map
from world.games.policies import POLICIES, Policy, make_policy

__all__ = ["DEFAULT_EVAL_MAP", "DEFAULT_TRAIN_MAP", "MAPS", "POLICIES", "DoomConfig", "DoomGame", "GameError",
           "MapSpec", "Observation", "Policy", "UnknownMapError", "get_map", "make_policy"]
