import numpy as np
import pytest

pytest.importorskip("vizdoom")

from reverie.world.actions import CONTROLS, DOOM_ACTIONS
from reverie.world.games.doom import DoomConfig, DoomGame, GameError, area_average, parse_resolution, render_resolution
from reverie.world.games.maps import MAPS, UnknownMapError, get_map, maps_for

ACTIONS = np.random.default_rng(7).integers(0, len(DOOM_ACTIONS), 60)


def _play(game, seed, actions=ACTIONS):
    obs = game.reset(seed)
    frames, poses = [obs.frame], [obs.pose]
    for a in actions:
        obs = game.step(int(a))
        frames.append(obs.frame)
        poses.append(obs.pose)
    return np.stack(frames), np.stack(poses)


@pytest.fixture(scope="module")
def maze():
    with DoomGame(DoomConfig(map="maze")) as game:
        yield game


def test_frames_are_small_uint8_rgb(maze):
    obs = maze.reset(0)
    assert obs.frame.shape == (48, 64, 3) and obs.frame.dtype == np.uint8
    assert obs.pose.shape == (3,) and obs.step == 0 and not obs.done
    assert obs.frame.std() > 5  # a rendered scene, not a blank screen


def test_same_seed_and_actions_give_identical_frames_and_poses(maze):
    f1, p1 = _play(maze, seed=3)
    f2, p2 = _play(maze, seed=3)
    assert np.array_equal(f1, f2) and np.array_equal(p1, p2)
    assert not np.array_equal(f1[0], f1[-1])  # the actions did something


def test_two_games_in_one_process_agree_step_by_step():
    cfg = DoomConfig(map="freedoom2-map01")
    with DoomGame(cfg) as a, DoomGame(cfg) as b:
        oa, ob = a.reset(5), b.reset(5)
        for act in ACTIONS[:40]:
            oa, ob = a.step(int(act)), b.step(int(act))
            assert np.array_equal(oa.frame, ob.frame) and np.array_equal(oa.pose, ob.pose)


def test_depth_map_is_optional_and_leaves_frames_unchanged(maze):
    f1, p1 = _play(maze, seed=2, actions=ACTIONS[:20])
    with DoomGame(DoomConfig(map="maze", depth=True)) as game:
        obs = game.reset(2)
        assert obs.depth.shape == (48, 64) and obs.depth.dtype == np.uint8
        f2, p2 = _play(game, seed=2, actions=ACTIONS[:20])
    assert maze.reset(2).depth is None
    assert np.array_equal(f1, f2) and np.array_equal(p1, p2)


def test_the_eye_is_where_the_player_stands_at_view_height_and_bobs_when_walking(maze):
    obs = maze.reset(1)
    assert obs.camera.shape == (4,)
    assert np.allclose(obs.camera[[0, 1, 3]], obs.pose, atol=1e-6)  # x, y, angle of the player
    z0 = obs.camera[2]
    zs = [maze.step(DOOM_ACTIONS.index("forward")).camera[2] for _ in range(8)]
    assert np.ptp(zs) > 1.0 and abs(np.mean(zs) - z0) < 8  # the walking bob moves the eye up and down


def test_seed_changes_the_maze_start(maze):
    starts = {tuple(maze.reset(s).pose[:2]) for s in range(4)}
    assert len(starts) > 1


def _delta(game, name, n=12):
    start = game.reset(0).pose
    idx = DOOM_ACTIONS.index(name)
    for _ in range(n):
        end = game.step(idx).pose
    return start, end


@pytest.mark.parametrize("name,sign,axis", [("forward", 1, 0), ("back", -1, 0), ("strafe_left", 1, 1),
                                            ("strafe_right", -1, 1)])
def test_movement_controls_move_the_player_where_they_say(maze, name, sign, axis):
    start, end = _delta(maze, name)
    a = np.radians(start[2])
    heading, left = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    move = end[:2] - start[:2]
    along = move @ (heading if axis == 0 else left)
    assert sign * along > 10, (name, move)
    assert abs(end[2] - start[2]) < 1e-6


@pytest.mark.parametrize("name,sign", [("turn_left", 1), ("turn_right", -1)])
def test_turn_controls_turn(maze, name, sign):
    start, end = _delta(maze, name)
    turned = (end[2] - start[2] + 180) % 360 - 180
    assert sign * turned > 20 and np.hypot(*(end[:2] - start[:2])) < 1e-6


def test_action_space_round_trips_through_the_game_buttons():
    game = DoomGame(DoomConfig())
    assert game._table == [DOOM_ACTIONS.button_vector(i) for i in range(len(DOOM_ACTIONS))]
    for i in range(len(DOOM_ACTIONS)):
        held = tuple(c for c, b in zip(CONTROLS, game._table[i]) if b)
        assert DOOM_ACTIONS.from_controls(held) == i
        assert set(held) == set(DOOM_ACTIONS.controls(i))


@pytest.mark.parametrize("k,h,w", [(4, 48, 64), (2, 60, 80), (3, 10, 14), (5, 48, 64), (1, 4, 4)])
def test_area_average_is_the_rounded_block_mean(k, h, w):
    rng = np.random.default_rng(k)
    big = rng.integers(0, 256, (h * k, w * k, 3), dtype=np.uint8)
    big[:k, :k] = 255  # a saturated block must not overflow
    small = area_average(big, k)
    mean = big.reshape(h, k, w, k, 3).astype(np.float64).mean(axis=(1, 3))
    assert small.dtype == np.uint8 and small.shape == (h, w, 3)
    assert np.array_equal(small, np.floor(mean + 0.5).astype(np.uint8))


def test_render_resolution_is_an_exact_multiple():
    assert render_resolution((64, 48)) == (256, 192, 4)
    assert render_resolution((160, 120)) == (320, 240, 2)
    with pytest.raises(ValueError, match="not an exact fraction"):
        render_resolution((63, 47))
    assert parse_resolution("80x60") == (80, 60)
    with pytest.raises(ValueError):
        parse_resolution("64by48")


def test_other_resolution_renders_at_that_size():
    with DoomGame(DoomConfig(map="freedoom2-map02", resolution=(80, 60))) as game:
        assert game.reset(0).frame.shape == (60, 80, 3)


def test_maps_registry_has_train_eval_and_a_maze():
    assert maps_for("train") and maps_for("eval")
    assert any(s.maze for s in MAPS.values())
    with pytest.raises(UnknownMapError, match="registered maps"):
        get_map("e1m1-nope")
    with pytest.raises(UnknownMapError):
        DoomConfig(map="nope")


@pytest.mark.parametrize("name", sorted(MAPS))
def test_every_registered_map_loads_and_the_player_can_move(name):
    """Each map's WAD and lump exist in the installed vizdoom wheel, and a few forward steps change the
    picture (the player is not stuck in a wall or dead at the start)."""
    forward = DOOM_ACTIONS.index("forward")
    with DoomGame(DoomConfig(map=name)) as game:
        first = game.reset(0).frame
        for _ in range(6):
            obs = game.step(forward)
        assert not np.array_equal(first, obs.frame)


def test_step_before_reset_and_bad_actions_are_errors():
    game = DoomGame(DoomConfig())
    with pytest.raises(GameError):
        game.step(0)
    game.reset(0)
    with pytest.raises(ValueError):
        game.step(len(DOOM_ACTIONS))
    game.close()


def test_episode_end_is_flagged_and_then_repeats_the_last_observation():
    with DoomGame(DoomConfig(map="freedoom2-map01")) as game:
        game.reset(0)
        before = game.step(DOOM_ACTIONS.index("forward"))
        game._game.send_game_command("kill")  # the player dies (as on a damaging floor)
        obs = [game.step(0) for _ in range(40)]
        ended = next(i for i, o in enumerate(obs) if o.done)
        after = [game.step(DOOM_ACTIONS.index("forward")) for _ in range(3)]
        assert all(o.done for o in obs[ended:]) and all(o.done for o in after)
        assert all(np.array_equal(o.frame, after[0].frame) and np.array_equal(o.pose, after[0].pose) for o in after)
        assert not before.done
        assert not game.reset(0).done  # a new episode starts cleanly


def test_maze_goal_is_removed_so_the_episode_does_not_end():
    # seed 2 + wander reached the maze's goal (an exit) at step 712 before the goal was removed
    from reverie.world.games.drivers import make_driver

    with DoomGame(DoomConfig(map="maze")) as game:
        obs = game.reset(2)
        driver = make_driver("wander", seed=2)
        driver.reset(obs)
        for _ in range(760):
            obs = game.step(driver.act(obs))
        assert not obs.done
