import numpy as np
import pygame

from reverie.engine.cli import main
from reverie.engine.rollout import RolloutMeta, RolloutWriter
from reverie.input.replay import play_frames, replay_lines


def write_rollout(path, n=6):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, 12, 16, 3), dtype=np.uint8)
    with RolloutWriter(path, RolloutMeta(source="model:tiny", seed=0, frame_shape=(12, 16, 3), fps=200.0)) as w:
        for i, f in enumerate(frames):
            w.append(f, i % 3)
    return frames


def test_replay_shows_the_recorded_frames(tmp_path):
    frames = write_rollout(tmp_path / "r")
    shot = tmp_path / "shot.png"
    shown = play_frames(frames, ["noop"] * len(frames), fps=500, scale=3, hud=False, screenshot=str(shot))
    assert shown == len(frames)
    image = pygame.surfarray.array3d(pygame.image.load(str(shot))).transpose(1, 0, 2)
    assert np.array_equal(image, np.kron(frames[-1], np.ones((3, 3, 1), np.uint8)))


def test_replay_command_headless(tmp_path, capsys):
    write_rollout(tmp_path / "r")
    assert main(["replay", str(tmp_path / "r"), "--frames", "3", "--scale", "2", "--screenshot", str(tmp_path / "s.png")]) == 0
    assert "showed 3 frames of 6" in capsys.readouterr().err and (tmp_path / "s.png").exists()
    assert main(["replay", str(tmp_path / "missing")]) == 2
    assert replay_lines(0, 6, "forward", 15, True)[0].startswith("frame 1/6")
