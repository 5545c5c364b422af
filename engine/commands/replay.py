"""`reverie replay DIR`: show a recorded rollout in the window, or regenerate it with a model.

With `--model`, the recording's actions are replayed through the model from its seed frame (row 0) with
the recorded seed, policy and budget; the command reports how many frames match the recording exactly
(a regenerable recording matches all of them) and, with `--out`, writes the regenerated rollout.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="rollout directory")
    parser.add_argument("--fps", type=float, default=None, help="playback rate (default: the recording's)")
    parser.add_argument("--scale", type=int, default=None)
    parser.add_argument("--loop", action="store_true")
    parser.add_argument("--frames", type=int, default=None, help="stop after showing this many frames")
    parser.add_argument("--screenshot", default=None, help="save a PNG of the window at the end")
    parser.add_argument("--model", default=None, help="regenerate the frames with this model instead of showing them")
    parser.add_argument("--model-kwargs", default="{}", metavar="JSON")
    parser.add_argument("--out", default=None, help="with --model: write the regenerated rollout here")
    parser.add_argument("--json", action="store_true", help="with --model: print a JSON summary as the last line")


def run(args: argparse.Namespace) -> int:
    from reverie.engine.rollout import RolloutError, read_rollout

    try:
        rollout = read_rollout(args.dir)
    except (RolloutError, FileNotFoundError, OSError) as exc:
        print(f"reverie replay: {exc}", file=sys.stderr)
        return 2
    if args.model is not None:
        return _regenerate(rollout, args)
    from reverie.input.replay import play_frames

    names = rollout.action_names
    shown = play_frames(rollout.frames, names, fps=args.fps or rollout.meta.fps, scale=args.scale,
                        max_frames=args.frames, screenshot=args.screenshot, loop=args.loop,
                        title=f"reverie replay - {rollout.path.name}")
    print(f"reverie replay: showed {shown} frames of {len(rollout)} ({'complete' if rollout.complete else 'partial'} rollout)",
          file=sys.stderr)
    return 0


def _regenerate(rollout, args) -> int:
    import numpy as np

    from reverie.engine.commands.serve import load_world
    from reverie.engine.replay import regenerate

    model = load_world(args.model, json.loads(args.model_kwargs))
    frames = regenerate(rollout, model, out=args.out)
    recorded = rollout.frames[1:]
    same = int(np.all(frames == recorded, axis=(1, 2, 3)).sum())
    result = {"frames": int(len(frames)), "identical_frames": same, "match": same == len(frames),
              "regenerable": bool(rollout.meta.config.get("regenerable", True)), "model": model.spec.name}
    if args.out:
        result["out"] = args.out
    print(f"reverie replay: regenerated {result['frames']} frames with {args.model}: "
          f"{same} identical to the recording", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0 if result["match"] or not result["regenerable"] else 1
