"""`reverie bench events`: a player leaves for another place and comes back, under each scene handling.

Each episode is three stretches of the real game on one map. The player plays at place A (the start its
seed picks, `--before` frames after `--context` real ones), is teleported to place B (another start: the
real game's first frame there, `--away` frames of its own actions), then is teleported back to A's start
and replays A's first `--back` actions, so the real frames of the return are A's first frames again. The
model plays the same from A's real context frames: each teleport is a new scene (`Session.scene`) with
the real game's frame and pose of the place, handled as `flush`, `cut` or `recache` (`memory.events`).
A `fresh` row is a new session started at B from the same frame: what forgetting everything gives.

Per handling, averaged over episodes:
  `away_psnr`: PSNR of the model's frames against the real game's at B, frames 1-4, 5-16 and 17 on
      after the teleport (how well it draws the new place it was just shown);
  `away_realism`: PSNR of those frames to the nearest frame of a bank of other real episodes of the map;
  `old_place_frames`: how many of the frames at B are closer (PSNR) to A's last real frame than to B's
      real frame of that step: the old scene bleeding into the new one (0 is best);
  `recall_psnr`: PSNR against the real game over the return to A (what the model still draws of the
      place it left), and `recall_gain_db` over `flush` (what keeping the old scene is worth);
  `event_ms`: median milliseconds of the scene change itself (the memory event and the new frame's commit).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reverie.engine.bench import metrics as M
from reverie.engine.bench.report import finish
from reverie.engine.heap import settle_heap
from reverie.memory.events import SCENE_HANDLINGS

WINDOWS = ((1, 4), (5, 16), (17, None))
#: B's start seed is A's plus this (another start of the map); the realism bank's episodes follow it
AWAY_SEED_OFFSET, BANK_SEED_OFFSET = 50, 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.keyvalues import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--map", default="maze", help="real-game map (default: %(default)s: each seed starts in another room)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes (default: %(default)s)")
    parser.add_argument("--context", type=int, default=4, help="real frames at A before the model plays")
    parser.add_argument("--before", type=int, default=64, help="frames played at A before the teleport")
    parser.add_argument("--away", type=int, default=48, help="frames played at B")
    parser.add_argument("--back", type=int, default=32, help="frames of the return to A")
    parser.add_argument("--handlings", default=",".join(SCENE_HANDLINGS), help="comma-separated scene handlings")
    parser.add_argument("--policy", default="dual", help="memory policy (default budget; default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7301, help="seed of the first episode's place A")
    parser.add_argument("--bank-frames", type=int, default=4000, help="real frames in the realism bank")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def play_away_and_back(model, a, b, args, handling: str | None, seed: int) -> dict:
    """The model's frames at B (`away`) and on the return (`back`), and the seconds of each scene change;
    `handling` None: a fresh session at B (no return)."""
    from reverie.engine.session import Session

    c = args.context
    if handling is None:
        session = Session(model, b.frames[0], policy=args.policy, seed=seed)
        return {"away": _play(session, b.actions[1:args.away + 1]), "event_s": []}
    session = Session(model, a.frames[0], policy=args.policy, seed=seed)
    if session.pose is not None:
        session.pose = tuple(float(v) for v in a.poses[0])  # dead reckoning in the game's coordinates
    session.observe(a.frames[1:c], a.actions[1:c])
    _play(session, a.actions[c:c + args.before])
    out = {"event_s": []}
    for name, place, actions, n in (("away", b, b.actions, args.away), ("back", a, a.actions, args.back)):
        t0 = time.perf_counter()
        session.scene(place.frames[0], handling, pose=place.poses[0])
        out["event_s"].append(time.perf_counter() - t0)
        out[name] = _play(session, actions[1:n + 1])
    return out


def _play(session, actions) -> np.ndarray:
    return np.stack([session.step(int(x)).frame for x in actions])


def score(model, args, tics: int, handlings: list[str]) -> dict:
    from reverie.engine.bench.freeplay import record_bank
    from reverie.world.dit.data import play_episode

    h, w, _ = model.spec.frame_shape
    c = args.context
    bank = record_bank(args.map, args.bank_frames, args.seed + BANK_SEED_OFFSET, tics, (w, h))
    rows: dict = {name: {"away": [], "realism": [], "old": [], "back": [], "event_s": []}
                  for name in ["fresh", *handlings]}
    for i in range(args.episodes):
        seed = args.seed + i
        a = play_episode(args.map, "wander", c + args.before, seed, tics, (w, h))
        b = play_episode(args.map, "wander", args.away + 1, seed + AWAY_SEED_OFFSET, tics, (w, h))
        a_last, real_b = a.frames[c + args.before - 1], b.frames[1:args.away + 1]
        for name in rows:
            got = play_away_and_back(model, a, b, args, None if name == "fresh" else name, seed)
            rows[name]["away"].append(M.psnr(got["away"], real_b))
            rows[name]["realism"].append(M.nearest_psnr(got["away"], bank))
            rows[name]["old"].append(float(np.sum(M.psnr(got["away"], a_last) > M.psnr(got["away"], real_b))))
            rows[name]["event_s"] += got["event_s"]
            if "back" in got:
                rows[name]["back"].append(M.psnr(got["back"], a.frames[1:args.back + 1]))
    return {name: _summary(r) for name, r in rows.items()} | _gains(rows)


def _summary(r: dict) -> dict:
    away = np.asarray(r["away"], np.float64)  # [episodes, frames]
    n = away.shape[1]
    windows = {f"{s}-{min(e or n, n)}": round(float(away[:, s - 1:e].mean()), 2) for s, e in WINDOWS if s <= n}
    return {"away_psnr": windows, "away_realism": round(float(np.mean(r["realism"])), 2),
            "old_place_frames": round(float(np.mean(r["old"])), 2),
            "recall_psnr": round(float(np.mean(r["back"])), 2) if r["back"] else None,
            "event_ms": round(1000 * float(np.median(r["event_s"])), 2) if r["event_s"] else None}


def _gains(rows: dict) -> dict:
    if "flush" not in rows or not rows["flush"]["back"]:
        return {}
    base = float(np.mean(rows["flush"]["back"]))
    return {"recall_gain_db": {name: round(float(np.mean(r["back"])) - base, 2)
                               for name, r in rows.items() if r["back"] and name != "flush"}}


def run(args: argparse.Namespace) -> int:
    import torch

    from reverie.engine.keyvalues import parse_key_values
    from reverie.world.games.maps import get_map
    from reverie.world.registry import load_model

    torch.set_num_threads(max(1, args.threads))
    get_map(args.map)
    handlings = [x.strip() for x in args.handlings.split(",") if x.strip()]
    unknown = set(handlings) - set(SCENE_HANDLINGS)
    if unknown:
        raise SystemExit(f"reverie bench events: unknown handling(s) {sorted(unknown)}; known: {list(SCENE_HANDLINGS)}")
    if min(args.episodes, args.context, args.before, args.away, args.back, args.bank_frames) < 1:
        raise SystemExit("reverie bench events: --episodes, --context, --before, --away, --back and "
                         "--bank-frames must be >= 1")
    if args.back > args.context + args.before - 1:
        raise SystemExit("reverie bench events: --back must not exceed --context + --before - 1 (the return "
                         "replays A's first frames)")
    try:
        model = load_model(args.model, **parse_key_values(args.model_arg))
    except Exception as exc:  # unknown model, missing or corrupt weights: say so and stop
        raise SystemExit(f"reverie bench events: cannot load model '{args.model}': {exc}") from None
    settle_heap()
    spec = model.spec
    if (args.context - 1) % spec.chunk_frames:
        raise SystemExit(f"reverie bench events: --context - 1 must be a multiple of {spec.chunk_frames} frames")
    tics = int((getattr(model, "meta", None) or {}).get("tics_per_step", spec.tics_per_step))
    result = {"model": spec.name, "policy": args.policy, "map": args.map, "episodes": args.episodes,
              "context": args.context, "before": args.before, "away": args.away, "back": args.back,
              "seed": args.seed, "threads": torch.get_num_threads(), "handlings": score(model, args, tics, handlings)}
    _print_table(result)
    return finish(result, args.json)


def _print_table(r: dict) -> None:
    rows = {k: v for k, v in r["handlings"].items() if k != "recall_gain_db"}
    gains = r["handlings"].get("recall_gain_db", {})
    print(f"scene events on {r['map']}: {r['episodes']} episodes, {r['before']} frames at A, {r['away']} at B, "
          f"{r['back']} back at A; {r['policy']} memory")
    windows = list(next(iter(rows.values()))["away_psnr"])
    print(f"{'handling':<10}" + "".join(f"{'B ' + w:>10}" for w in windows)
          + f"{'realism':>9}{'old':>6}{'recall':>8}{'gain':>7}{'ms':>8}")
    for name, s in rows.items():
        recall = "-" if s["recall_psnr"] is None else f"{s['recall_psnr']:.2f}"
        gain = f"{gains[name]:+.2f}" if name in gains else "-"
        ms = "-" if s["event_ms"] is None else f"{s['event_ms']:.1f}"
        print(f"{name:<10}" + "".join(f"{v:>10.2f}" for v in s["away_psnr"].values())
              + f"{s['away_realism']:>9.2f}{s['old_place_frames']:>6.1f}{recall:>8}{gain:>7}{ms:>8}")
