"""`reverie record`: record rollouts of the real game (Doom), driven by an exploration driver (a scripted
player, `world.games.drivers`) or an action file.

    reverie record --game doom --map maze --driver wander --steps 2000 --episodes 8 --out data/train
    reverie record --game doom --map maze --actions examples/actions/square.json --out runs/square

One episode writes one rollout directory at --out; K > 1 episodes write --out/ep000 ... --out/ep{K-1},
episode i seeded with --seed + i. `--steps` counts rows (frames): row 0 is the reset frame. `--policy` is
a deprecated alias of `--driver` (it prints a note), kept for one release.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GAMES = {"doom": "reverie.world.games.doom"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.world.games.maps import DEFAULT_TRAIN_MAP, MAPS
    from reverie.world.games.drivers import DRIVERS

    parser.add_argument("--game", default="doom", choices=sorted(GAMES), help="the real game (default: doom)")
    parser.add_argument("--map", default=DEFAULT_TRAIN_MAP,
                        help=f"map name (default {DEFAULT_TRAIN_MAP}); one of: {', '.join(MAPS)}")
    src = parser.add_mutually_exclusive_group()
    drivers = [d for d in DRIVERS if d != "actions"]
    src.add_argument("--driver", choices=drivers, default=None, help="exploration driver (default: wander)")
    src.add_argument("--policy", dest="deprecated_policy", choices=drivers, default=None,
                     help=argparse.SUPPRESS)  # the old name of --driver, kept for one release
    src.add_argument("--actions", metavar="FILE", help="play back a JSON list of action names, one per step")
    parser.add_argument("--steps", type=int, default=None,
                        help="rows per episode, including the first frame (default 1000; with --actions: its length)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to record (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of episode 0; episode i uses seed + i")
    parser.add_argument("--resolution", default="64x48", help="frame size WxH (default 64x48)")
    parser.add_argument("--tics-per-step", type=int, default=1, help="game tics per step (35 tics = 1 s)")
    parser.add_argument("--no-preview", action="store_true", help="skip writing preview.mp4")
    parser.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def _fail(msg: str) -> int:
    print(f"reverie record: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from reverie.engine.rollout.game import record_episode
    from reverie.world.games.doom import DoomConfig, DoomGame, GameError, parse_resolution
    from reverie.world.games.maps import UnknownMapError
    from reverie.world.games.drivers import DRIVERS, make_driver

    if getattr(args, "deprecated_policy", None):
        print("reverie record: --policy is deprecated, use --driver (same names)", file=sys.stderr)
    if args.episodes < 1:
        return _fail("--episodes must be >= 1")
    try:
        driver_name = None if args.actions else (args.driver or getattr(args, "deprecated_policy", None) or "wander")
        config = DoomConfig(map=args.map, resolution=parse_resolution(args.resolution),
                            tics_per_step=args.tics_per_step,
                            depth=bool(driver_name and DRIVERS[driver_name].factory.needs_depth))
        if args.actions:
            n_file = len(make_driver("actions", path=args.actions))
            steps = n_file if args.steps is None else args.steps
            if steps > n_file:
                return _fail(f"--steps {steps} is longer than the action file ({n_file} steps)")
        else:
            steps = 1000 if args.steps is None else args.steps
        if steps < 1:
            return _fail("--steps must be >= 1")
    except (ValueError, UnknownMapError) as exc:
        return _fail(str(exc))
    out = Path(args.out)
    dirs = [out] if args.episodes == 1 else [out / f"ep{i:03d}" for i in range(args.episodes)]
    for d in dirs:
        if d.exists() and any(d.iterdir()):
            return _fail(f"{d} already exists and is not empty")
    results = []
    try:
        with DoomGame(config) as game:
            for i, d in enumerate(dirs):
                seed = args.seed + i
                driver = (make_driver("actions", seed=seed, path=args.actions) if args.actions
                          else make_driver(driver_name, seed=seed))
                r = record_episode(game, driver, seed=seed, steps=steps, out_dir=d, preview=not args.no_preview)
                results.append(r)
                note = " (episode ended early: goal reached or player died)" if r.ended_early else ""
                print(f"{d}: {r.steps} steps, map {config.map}, seed {seed}, "
                      f"{r.steps / max(r.record_s, 1e-9):.0f} steps/s, preview {r.preview_s:.1f} s{note}")
    except GameError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({"episodes": [{"dir": str(r.dir), "steps": r.steps, "frames_sha256": r.frames_sha256,
                                        "ended_early": r.ended_early} for r in results]}))
    return 0
