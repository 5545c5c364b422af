"""The one loop over the real game: reset with a seed, then a driver acts, one step at a time.

    with DoomGame(config) as game:
        for action, obs in run_episode(game, make_driver("wander", seed=3), seed=3, steps=100):
            ...                              # row 0: the reset frame with action 0 (noop)

Recording to disk (`engine.rollout.game.record_episode`, `reverie bench record`) and the benches'
episodes (`engine.bench.episodes.game_episode`) step the game through it.
"""

from __future__ import annotations

from typing import Iterator


def run_episode(game, driver, *, seed: int, steps: int, until_done: bool = False) -> Iterator[tuple[int, object]]:
    """Reset `game` (a `world.games.DoomGame`) with `seed` and let `driver` (a `world.games.Driver`) play:
    yields `(action, obs)` for row 0 (the reset observation, action 0) and then each of the next `steps - 1`
    steps (`obs` a `world.games.Observation`). With `until_done` it stops after the row on which the episode ended (goal
    reached or player died); otherwise the game repeats that last observation (flagged `done`)."""
    obs = game.reset(seed)
    driver.reset(obs)
    yield 0, obs
    for _ in range(steps - 1):
        if until_done and obs.done:
            return
        action = int(driver.act(obs))
        obs = game.step(action)
        yield action, obs
