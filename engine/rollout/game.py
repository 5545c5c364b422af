"""Record rollouts of the real game driven by an exploration driver (`world.games.drivers`).

A game rollout's `meta.json` config holds the driver's description under "driver" (`Driver.describe()`:
name, seed, options, e.g. go-and-return's finished loops). Rollouts written before the rename to drivers
hold it under "policy"; `recorded_driver` reads both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from reverie.engine.rollout.format import RolloutMeta
from reverie.engine.rollout.writer import RolloutWriter
from reverie.world.actions import GAME_TICS_PER_SECOND
from reverie.world.games.episode import run_episode


@dataclass(frozen=True)
class EpisodeResult:
    dir: Path
    steps: int
    frames_sha256: str
    ended_early: bool
    record_s: float
    preview_s: float


def record_episode(game, driver, *, seed: int, steps: int, out_dir: str | Path, preview: bool = True,
                   extra_config: dict | None = None) -> EpisodeResult:
    """Reset `game` (a `world.games.doom.DoomGame`) with `seed`, run `driver` for `steps` rows (row 0 is
    the reset frame, action `noop`; then steps - 1 driver actions) and write one rollout to `out_dir`.

    Stops early, with a shorter rollout, if the episode ends (goal reached or the player died)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    cfg = game.config
    meta = RolloutMeta(source="game", seed=int(seed), frame_shape=game.frame_shape, map=cfg.map,
                       fps=GAME_TICS_PER_SECOND / cfg.tics_per_step,
                       config={"game": {"name": "doom", **cfg.to_dict()}, "driver": driver.describe(),
                               **(extra_config or {})})
    t0 = time.perf_counter()
    writer = RolloutWriter(out_dir, meta)
    try:
        for action, obs in run_episode(game, driver, seed=seed, steps=steps, until_done=True):
            writer.append(obs.frame, action, obs.pose, done=obs.done)
    except BaseException:
        writer.abort()
        raise
    record_s = time.perf_counter() - t0
    # The driver's description may have grown (e.g. finished go-and-return loops): store the final one.
    writer.meta = RolloutMeta(**{**meta.__dict__, "config": {**meta.config, "driver": driver.describe()}})
    summary = writer.close(preview=preview)
    return EpisodeResult(Path(out_dir), summary["steps"], summary["frames_sha256"],
                         ended_early=summary["steps"] < steps, record_s=record_s, preview_s=summary["preview_s"])


def recorded_driver(config: dict) -> dict | None:
    """The description of the driver that played a game rollout, from its meta config: "driver", or in a
    rollout written before the rename "policy" when that holds a description (a dict; a string there is the
    memory policy of an engine recording, not a driver). None when the rollout names no driver."""
    driver = config.get("driver", config.get("policy"))
    return driver if isinstance(driver, dict) else None
