"""`reverie bench ceiling`: how much better than repeating the last frame can moving it get?

A model that predicts the next frame as its last frame moved by the camera (the default model does, with
its warp and flow) is bounded by how well that move can be known. This bench measures the bound on the
same held-out episodes as `reverie bench model` (same map, seeds, exploration drivers and frame skip), using what
only the real game knows: its depth buffer and eye positions (`world.games.reproject`).

- `repeat_last`: the last real frame again (the baseline of `tf_psnr`).
- `reproject_true_motion`: the last frame traced through the next frame's true depth along the eye's
  true move: a perfect camera model; what is left is disocclusion, lighting and sampling.
- `reproject_true_motion_source_depth`: the same with the last frame's depth (a model only ever sees the
  frames it has).
- `reproject_predicted_motion`: the last frame's true depth, and the eye's move *predicted* from what a
  model can know: the true eye moves of the last three frames, the action of the next frame and of the
  last three, and the phase of the walking bob; a least-squares fit on training-map episodes.
  `motion_r2` says how well each part of the move is predicted (ahead, right, turn, up).
- `reproject_predicted_motion_averaged`: the mean of the frames redrawn along the predicted move plus
  `--samples` of the fit's own training errors: the PSNR-best hedge when the move is uncertain (a
  model scored by PSNR gains by averaging; this is how far averaging over the motion can go).

Nothing here is trained on the held-out map; the depth unit is fitted on the training episodes too.
"""

from __future__ import annotations

import argparse

import numpy as np

from reverie.engine.bench.report import finish

TRAIN_DRIVERS = ("wander", "random", "go-and-return")
MOTION_PARTS = ("ahead", "right", "turn", "up")
BOB_PERIOD_TICS = 20  # Doom's walking bob: one cycle every 20 tics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.bench.model import add_heldout_arguments

    add_heldout_arguments(parser)  # the same held-out episodes as `bench model`
    parser.add_argument("--resolution", default="64x48")
    parser.add_argument("--train-maps", default="maze,freedoom2-map01",
                        help="maps of the motion fit (default: the bundled model's training maps)")
    parser.add_argument("--train-episodes", type=int, default=2, help="episodes per training map and driver")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--samples", type=int, default=32,
                        help="moves averaged for the hedged prediction (the fit's residuals, drawn from --seed)")


def _controls() -> np.ndarray:
    """`[actions, 3]`: forward (+1) / back (-1), turn left / right, strafe left / right of every action."""
    from reverie.world.actions import DOOM_ACTIONS

    out = []
    for i in range(len(DOOM_ACTIONS)):
        held = set(DOOM_ACTIONS.controls(i))
        out.append([("forward" in held) - ("back" in held), ("turn_left" in held) - ("turn_right" in held),
                    ("strafe_left" in held) - ("strafe_right" in held)])
    return np.array(out, dtype=np.float64)


def motion_pairs(ep, start: int, tics: int):
    """Features and targets for predicting the eye's move from frame t to t + 1, for t + 1 >= start."""
    from reverie.world.games.reproject import eye_motion

    cam, ctl = ep.camera, _controls()[ep.actions]
    moves = eye_motion(cam[:-1], cam[1:])  # moves[t]: t -> t + 1
    x, y, t_index = [], [], []
    for t in range(max(3, start - 1), len(cam) - 1):
        phase = 2 * np.pi * tics * (t + 1) / BOB_PERIOD_TICS
        speed = np.hypot(*moves[t - 1][:2])
        bob = [np.sin(phase), np.cos(phase)]
        x.append(np.concatenate([moves[t - 1], moves[t - 2], moves[t - 3], *(ctl[t + 1 - k] for k in range(4)),
                                 bob, [speed * b for b in bob], [speed ** 2 * b for b in bob], [1.0]]))
        y.append(moves[t])
        t_index.append(t)
    return np.array(x), np.array(y), t_index


def float_psnr(a, b) -> np.ndarray:
    """Per-frame PSNR (`engine.bench.metrics.psnr`, as every bench) of float frames in [0, 1], as uint8."""
    from reverie.engine.bench.metrics import psnr as psnr_uint8

    def to_uint8(x):
        return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)

    return psnr_uint8(to_uint8(a), to_uint8(b))


def reprojected(eps: list, moves: list[np.ndarray], depth_of: str, starts: list[list[int]],
                depth_unit: float) -> np.ndarray:
    """Per-frame PSNR of frame t + 1 redrawn from frame t along `moves` (one row per t in `starts`; an
    episode's moves `[K, N, 4]` instead of `[N, 4]` average the K redrawn frames)."""
    import torch
    import torch.nn.functional as F

    from reverie.world.games.reproject import reproject_grid

    out = []
    for ep, move, ts in zip(eps, moves, starts):
        ts = np.asarray(ts)
        src = torch.from_numpy(ep.frames[ts]).float().permute(0, 3, 1, 2) / 255.0
        dst = ep.frames[ts + 1].astype(np.float64) / 255.0
        depth = torch.from_numpy(ep.depth[ts + 1 if depth_of == "target" else ts].astype(np.float32))
        samples = np.asarray(move).reshape(-1, len(ts), 4)
        img = 0.0
        for m in samples:
            grid = reproject_grid(depth, torch.as_tensor(m, dtype=torch.float32), depth_unit=depth_unit)
            img = img + F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        img = img / len(samples)
        out.append(float_psnr(img.permute(0, 2, 3, 1).numpy().astype(np.float64), dst))
    return np.concatenate(out)


def run(args: argparse.Namespace) -> int:
    from reverie.world.dit.data import play_episode
    from reverie.world.games.doom import parse_resolution
    from reverie.world.games.maps import DEFAULT_EVAL_MAP, get_map
    from reverie.world.games.reproject import eye_motion

    map_name = args.map or DEFAULT_EVAL_MAP
    if get_map(map_name).role != "eval":
        print(f"warning: map '{map_name}' is not a held-out map", flush=True)
    train_maps = [m.strip() for m in args.train_maps.split(",") if m.strip()]
    for m in train_maps:
        if get_map(m).role != "train":
            raise SystemExit(f"reverie bench ceiling: '{m}' is a held-out map; fit the motion on train maps")
    if args.samples < 1:
        raise SystemExit("reverie bench ceiling: --samples must be >= 1")
    if args.steps < args.context + 2 or args.context < 4:
        raise SystemExit("reverie bench ceiling: needs --context >= 4 (three past moves) and --steps > context + 1")
    res = parse_resolution(args.resolution)
    tics = args.tics_per_step
    train = [play_episode(m, p, args.train_steps, k, tics, res, depth=True) for m in train_maps
             for p in TRAIN_DRIVERS for k in range(args.train_episodes)]
    held = [play_episode(map_name, ("wander", "random")[i % 2], args.steps, args.seed + i, tics, res, depth=True)
            for i in range(args.episodes)]  # bench model's episodes, with the game's depth and eye

    # the motion fit (train maps only)
    fx, fy = (np.concatenate(a) for a in zip(*[motion_pairs(ep, 4, tics)[:2] for ep in train]))
    weights, *_ = np.linalg.lstsq(fx, fy, rcond=None)
    residuals = fy - fx @ weights  # the fit's own errors: what a prediction of the move cannot know
    # the depth unit, fitted on the train maps with their true moves
    true_train = [eye_motion(ep.camera[3:-1], ep.camera[4:]) for ep in train]
    train_ts = [list(range(3, len(ep) - 1)) for ep in train]
    units = np.arange(6.0, 12.01, 0.5)
    unit = float(units[int(np.argmax([reprojected(train, true_train, "target", train_ts, u).mean() for u in units]))])

    ts, true_moves, pred_moves = [], [], []
    for ep in held:
        x, y, t_index = motion_pairs(ep, args.context, tics)
        ts.append(t_index)
        true_moves.append(y)
        pred_moves.append(x @ weights)
    y_all, p_all = np.concatenate(true_moves), np.concatenate(pred_moves)
    rng = np.random.default_rng(args.seed)
    hedged = [p + residuals[rng.integers(0, len(residuals), (args.samples, len(p)))] for p in pred_moves]
    r2 = 1 - ((y_all - p_all) ** 2).mean(0) / np.maximum(y_all.var(0), 1e-12)
    repeat = np.concatenate([float_psnr(ep.frames[np.asarray(t)].astype(np.float64) / 255.0,
                                  ep.frames[np.asarray(t) + 1].astype(np.float64) / 255.0)
                             for ep, t in zip(held, ts)])
    result = {
        "map": map_name, "resolution": args.resolution, "tics_per_step": tics, "episodes": len(held),
        "frames_scored": int(len(repeat)), "depth_unit": unit,
        "repeat_last": round(float(repeat.mean()), 3),
        "reproject_true_motion": round(float(reprojected(held, true_moves, "target", ts, unit).mean()), 3),
        "reproject_true_motion_source_depth": round(float(reprojected(held, true_moves, "source", ts, unit).mean()), 3),
        "reproject_predicted_motion": round(float(reprojected(held, pred_moves, "source", ts, unit).mean()), 3),
        "reproject_predicted_motion_averaged": round(float(reprojected(held, hedged, "source", ts, unit).mean()), 3),
        "motion_r2": {k: round(float(v), 3) for k, v in zip(MOTION_PARTS, r2)},
        "train_maps": train_maps, "train_frames": int(sum(len(ep) for ep in train)),
    }
    base = result["repeat_last"]
    print(f"next-frame ceiling on {map_name} at {args.resolution}, {tics} tics per frame "
          f"({result['frames_scored']} frames; depth unit {unit:g} map units)")
    for key in ("repeat_last", "reproject_true_motion", "reproject_true_motion_source_depth",
                "reproject_predicted_motion", "reproject_predicted_motion_averaged"):
        print(f"  {key:<38}{result[key]:8.2f} dB  {result[key] - base:+6.2f}")
    print("  motion predicted from the past (R^2): " + ", ".join(f"{k} {v:.2f}" for k, v in result["motion_r2"].items()))
    return finish(result, args.json)
