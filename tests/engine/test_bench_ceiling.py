"""`reverie bench ceiling` on a few short episodes of the real game."""

import json

import pytest

pytest.importorskip("vizdoom")

from reverie.engine.cli import main


def test_the_ceiling_bench_reports_every_figure_and_true_motion_beats_repeating(capsys):
    code = main(["bench", "ceiling", "--json", "--episodes", "1", "--steps", "24", "--train-episodes", "1",
                 "--train-steps", "40", "--train-maps", "maze", "--samples", "4"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames_scored"] == 20 and result["tics_per_step"] == 4 and result["train_frames"] == 120
    for key in ("repeat_last", "reproject_true_motion", "reproject_true_motion_source_depth",
                "reproject_predicted_motion", "reproject_predicted_motion_averaged"):
        assert 10 < result[key] <= 50
    assert result["reproject_true_motion"] > result["repeat_last"] + 1.0
    assert set(result["motion_r2"]) == {"ahead", "right", "turn", "up"}


def test_the_motion_fit_refuses_held_out_maps():
    with pytest.raises(SystemExit, match="held-out map"):
        main(["bench", "ceiling", "--train-maps", "freedoom2-map02", "--episodes", "1", "--steps", "24"])


def test_episodes_carry_the_eye_always_and_the_depth_when_asked():
    from reverie.world.dit.data import play_episode

    plain = play_episode("maze", "random", 6, 3, 4)
    deep = play_episode("maze", "random", 6, 3, 4, depth=True)
    assert plain.depth is None and deep.depth.shape == (6, 48, 64) and deep.camera.shape == (6, 4)
    assert (plain.frames == deep.frames).all() and (plain.actions == deep.actions).all()  # same episode
