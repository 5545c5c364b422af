"""`reverie bench record`: how fast the real game records to disk.

Times `steps` rows of the real game (render, area-average, exploration driver, and the rollout writer appending
frames and step rows, plus `close()` finalising frames.npy and meta.json) into a temporary directory.
The mp4 preview is encoded afterwards and reported on its own (`preview_s`): it is not in frames_per_s.
For reference it also times the game alone (no writer) and the writer alone (re-writing the same
rows), each over the same number of steps.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from reverie.engine.bench.report import finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.world.games.maps import DEFAULT_TRAIN_MAP

    parser.add_argument("--steps", type=int, default=3000, help="rows to record (default 3000)")
    parser.add_argument("--map", default=DEFAULT_TRAIN_MAP)
    parser.add_argument("--driver", default="wander", help="exploration driver (default: wander)")
    parser.add_argument("--resolution", default="64x48")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary directory, removed)")


def _game_only(game, driver, seed: int, steps: int) -> float:
    """Steps per second of the game and driver alone (the reset not timed)."""
    from reverie.world.games.episode import run_episode

    rows = run_episode(game, driver, seed=seed, steps=steps, until_done=True)
    next(rows)
    t0 = time.perf_counter()
    n = 1 + sum(1 for _ in rows)
    return n / (time.perf_counter() - t0)


def _writer_only(rollout, out: Path) -> float:
    """Frames per second of the writer alone, re-writing the recorded frames and rows."""
    import numpy as np

    from reverie.engine.rollout.writer import RolloutWriter

    frames = np.ascontiguousarray(rollout.frames)
    t0 = time.perf_counter()
    with RolloutWriter(out, rollout.meta) as w:
        for t in range(len(rollout)):
            w.append(frames[t], int(rollout.actions[t]), rollout.poses[t], done=bool(rollout.done[t]))
        w.close(preview=False)
    return len(rollout) / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> int:
    from reverie.engine.rollout.game import record_episode
    from reverie.engine.rollout.preview import write_preview
    from reverie.engine.rollout.reader import read_rollout
    from reverie.world.games.doom import DoomConfig, DoomGame, parse_resolution
    from reverie.world.games.drivers import DRIVERS, make_driver

    if args.steps < 2:
        raise SystemExit("reverie bench record: --steps must be >= 2")
    if args.driver not in DRIVERS or args.driver == "actions":
        raise SystemExit(f"reverie bench record: --driver must be one of {[d for d in DRIVERS if d != 'actions']}")
    config = DoomConfig(map=args.map, resolution=parse_resolution(args.resolution),
                        depth=DRIVERS[args.driver].factory.needs_depth)
    with tempfile.TemporaryDirectory(prefix="reverie-bench-record-") as tmp:
        out = Path(args.dir) if args.dir else Path(tmp) / "rollout"
        with DoomGame(config) as game:
            game.reset(args.seed)  # start the engine before timing
            result = record_episode(game, make_driver(args.driver, seed=args.seed), seed=args.seed,
                                    steps=args.steps, out_dir=out, preview=False,
                                    extra_config={"bench": "record"})
            game_fps = _game_only(game, make_driver(args.driver, seed=args.seed), args.seed, args.steps)
        rollout = read_rollout(out, mmap=True)
        writer_fps = _writer_only(rollout, Path(tmp) / "rewrite")
        t0 = time.perf_counter()
        write_preview(out / "preview.mp4", rollout.frames, fps=rollout.meta.fps)
        preview_s = time.perf_counter() - t0
        disk_bytes = sum(p.stat().st_size for p in out.iterdir())
    fps = result.steps / result.record_s
    report = {"bench": "record", "frames_per_s": round(fps, 1), "steps": result.steps,
              "resolution": list(config.resolution), "map": config.map, "driver": args.driver,
              "record_s": round(result.record_s, 3), "game_only_frames_per_s": round(game_fps, 1),
              "writer_only_frames_per_s": round(writer_fps, 1),
              "writer_us_per_frame": round(1e6 / writer_fps, 1),
              "preview_s": round(preview_s, 3), "preview_frames_per_s": round(result.steps / preview_s, 1),
              "bytes_on_disk": disk_bytes,
              "timed": "game render + area-average + driver + writer append + close (preview excluded)"}
    print(f"{'what':<34}{'value':>14}")
    print(f"{'recorded frames/s (to disk)':<34}{report['frames_per_s']:>14.1f}")
    print(f"{'game alone frames/s':<34}{report['game_only_frames_per_s']:>14.1f}")
    print(f"{'writer alone frames/s':<34}{report['writer_only_frames_per_s']:>14.1f}")
    print(f"{'preview.mp4 encode s':<34}{report['preview_s']:>14.3f}")
    print(f"{'steps':<34}{report['steps']:>14d}")
    print(f"{'resolution':<34}{args.resolution:>14}")
    if result.ended_early:
        print("note: the episode ended before --steps (goal reached); frames_per_s uses the steps recorded")
    return finish(report, args.json)
