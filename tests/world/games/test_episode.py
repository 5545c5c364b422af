"""`world.games.episode.run_episode`, the one loop over the real game, on a scripted stand-in game."""

from types import SimpleNamespace

from reverie.world.games.episode import run_episode
from reverie.world.games.drivers import make_driver


class ScriptedGame:
    """Counts steps; the episode ends (done) after `end` steps, then repeats its last observation."""

    def __init__(self, end: int = 100) -> None:
        self.end, self.resets = end, []

    def reset(self, seed):
        self.resets.append(seed)
        self.obs = SimpleNamespace(step=0, done=False, action=None)
        return self.obs

    def step(self, action):
        if not self.obs.done:
            n = self.obs.step + 1
            self.obs = SimpleNamespace(step=n, done=n >= self.end, action=action)
        return self.obs


def test_row_zero_is_the_reset_frame_then_the_driver_acts():
    game = ScriptedGame()
    rows = list(run_episode(game, make_driver("actions", actions=[0, 3, 5, 7]), seed=4, steps=4))
    assert game.resets == [4]
    assert [a for a, _ in rows] == [0, 3, 5, 7] and [o.step for _, o in rows] == [0, 1, 2, 3]
    assert [o.action for _, o in rows[1:]] == [3, 5, 7]


def test_until_done_stops_after_the_row_that_ended_the_episode():
    driver = make_driver("actions", actions=[0] + [1] * 9)
    assert len(list(run_episode(ScriptedGame(end=3), driver, seed=0, steps=10, until_done=True))) == 4
    rows = list(run_episode(ScriptedGame(end=3), driver, seed=0, steps=10))
    assert len(rows) == 10 and all(o.done and o.step == 3 for _, o in rows[3:])
