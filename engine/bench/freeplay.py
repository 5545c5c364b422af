"""`reverie bench freeplay`: what a player sees in free play, measured against the real game.

Protocol (fixed seeds; every figure is per map, for `--maps`, default the play map `maze`, where
`reverie play` starts, and the held-out `world.games.maps.DEFAULT_EVAL_MAP`):

* Episodes: `--episodes` real-game episodes of `--context + --frames` steps with the `wander` driver (seeds
  `--seed + i`, default 7001..), at the model's frame skip (`tics_per_step` from its checkpoint metadata,
  else its spec).
* Free play: each episode is replayed through a `engine.session.Session` with the memory `--policy`
  (default `dual` at its default budget, as `reverie play`): the seed frame is the real frame 0, the real
  frames 1..context-1 are committed as known history (`Session.observe`), then `Session.step` gets the real
  action of every following frame and the model's own frames are its history. Free-play frame i (1-based)
  is the model's frame for episode step `context - 1 + i`; its real counterpart is that step's game frame.
* Bank: about `--bank-frames` frames (default 12,000: 12 episodes of 1,000 steps, alternating `wander`
  and `random`, seeds `--seed + 100 + j`) of other real episodes of the same map.
* Seeds: the defaults (7001.. evaluated, 7101.. bank) are disjoint from every training run (the data recipe
  `world.dit.data.generate_episodes` uses `1_000_003 * run_seed + 10_007 * map + 101 * driver + k`: below
  7001 on the first map for `k < 6,799`, 10,007 and up on the others, a million and up for run seeds
  >= 1) and from the other benches (`bench model` and `bench ceiling` use 1000.., `bench memory` 0..).

Per segment of free play (`engine.bench.metrics.segments`: frames 1-32, 33-128, 129-512, 513-1024, then
one per doubling), averaged over the episodes' frames (metrics defined in `engine.bench.metrics`):

* `psnr_vs_game` (first segment only): PSNR of the model's frame to the real frame;
  `psnr_repeat_last`: the last real context frame repeated, against the real frame.
* `realism_psnr`: PSNR of the model's frame to its nearest bank frame (does it look like somewhere on this
  map?); `realism_psnr_real`: the same for the episode's real frames (the bank's coverage).
* `sharpness_ratio`: the model frames' mean absolute image gradient over the bank's mean (1 = as sharp as
  the game; blur < 1); `sharpness_ratio_real`: the same for the real frames.
* `motion_ratio`: the model's mean absolute change between consecutive frames over the real episode's on
  the same frames (the previous frame of free-play frame 1 is the last context frame): 0 = frozen.

Per map, over the whole run: `turn_agreement`, the fraction of pure-turn frames on which the picture moves
the way the real game's does (phase correlation; no move counts as wrong), `turn_agreement_real` for the
real frames, `turn_frames` how many. Overall: `fps`, frames per second of `Session.step` over all of
free play on this machine (`--threads`), beside `real_time_fps` (`spec.real_time_fps`: the game's speed).

`--out DIR` writes `freeplay.json` (the result) and `freeplay_strip.png`: the first play-map episode's real
frames (top) over the model's (bottom) at free-play frames 1, 4, 16, 64, 256 and 1024, upscaled x4.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
import zlib
from pathlib import Path

import numpy as np

from reverie.engine.bench import metrics as M
from reverie.engine.bench.report import finish
from reverie.engine.heap import settle_heap

PLAY_MAP = "maze"
BANK_SEED_OFFSET = 100
BANK_EPISODE_STEPS = 1000
STRIP_FRAMES = (1, 4, 16, 64, 256, 1024)
STRIP_SCALE, STRIP_GAP = 4, 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.keyvalues import add_model_arguments
    from reverie.world.games.maps import DEFAULT_EVAL_MAP

    add_model_arguments(parser)
    parser.add_argument("--maps", default=f"{PLAY_MAP},{DEFAULT_EVAL_MAP}", help="comma-separated maps")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per map")
    parser.add_argument("--frames", type=int, default=1024, help="free-play frames per episode")
    parser.add_argument("--context", type=int, default=4, help="real frames before free play")
    parser.add_argument("--seed", type=int, default=7001, help="seed of the first episode (bank: seed + 100..)")
    parser.add_argument("--bank-frames", type=int, default=12000, help="real frames per map in the realism bank")
    parser.add_argument("--policy", default="dual", help="memory policy (default budget)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", default=None, help="directory for freeplay.json and freeplay_strip.png")


def free_play(model, episode, context: int, policy: str, seed: int) -> tuple[np.ndarray, float]:
    """The model's frames for `episode` steps `context..` (uint8 `[n, H, W, 3]`) and the seconds in `step`."""
    from reverie.engine.session import Session

    session = Session(model, episode.frames[0], policy=policy, seed=seed)
    session.observe(episode.frames[1:context], episode.actions[1:context])
    frames, seconds = [], 0.0
    for action in episode.actions[context:]:
        t0 = time.perf_counter()
        frames.append(session.step(int(action)).frame)
        seconds += time.perf_counter() - t0
    return np.stack(frames), seconds


def record_bank(map_name: str, frames: int, seed: int, tics: int, resolution) -> np.ndarray:
    """About `frames` real frames of `map_name`: episodes of up to 1000 steps, alternating wander/random."""
    from reverie.world.dit.data import play_episode

    count = max(1, -(-frames // BANK_EPISODE_STEPS))
    steps = max(2, -(-frames // count))
    return np.concatenate([play_episode(map_name, ("wander", "random")[j % 2], steps, seed + j, tics,
                                        resolution).frames for j in range(count)])


def score_map(model, map_name: str, args, tics: int) -> tuple[dict, tuple, float, int]:
    """One map's result, its first episode's (real, model) frames, and the seconds and frames of `step`."""
    from reverie.world.dit.data import play_episode

    h, w, _ = model.spec.frame_shape
    c, n = args.context, args.frames
    episodes = [play_episode(map_name, "wander", c + n, args.seed + i, tics, (w, h)) for i in range(args.episodes)]
    bank = record_bank(map_name, args.bank_frames, args.seed + BANK_SEED_OFFSET, tics, (w, h))
    bank_sharpness = float(M.sharpness(bank).mean())
    rows = {k: [] for k in ("vs_game", "repeat", "realism", "realism_real", "sharp", "sharp_real",
                            "motion", "motion_real")}
    turns = {"model": [], "real": []}
    seconds, first = 0.0, None
    for i, ep in enumerate(episodes):
        fake, sec = free_play(model, ep, c, args.policy, args.seed + i)
        seconds += sec
        real, actions, last = ep.frames[c:], ep.actions[c:], ep.frames[c - 1]
        fake_prev = np.concatenate([last[None], fake[:-1]])
        real_prev = ep.frames[c - 1:-1]
        rows["vs_game"].append(M.psnr(fake, real))
        rows["repeat"].append(M.psnr(last, real))
        rows["realism"].append(M.nearest_psnr(fake, bank))
        rows["realism_real"].append(M.nearest_psnr(real, bank))
        rows["sharp"].append(M.sharpness(fake) / bank_sharpness)
        rows["sharp_real"].append(M.sharpness(real) / bank_sharpness)
        rows["motion"].append(M.motion(fake_prev, fake))
        rows["motion_real"].append(M.motion(real_prev, real))
        turns["model"].append(M.turn_agreement(fake_prev, fake, actions))
        turns["real"].append(M.turn_agreement(real_prev, real, actions))
        if i == 0:
            first = (real, fake)
    rows = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}  # [episodes, frames]
    segs = []
    for s, e in M.segments(n):
        mean = {k: float(v[:, s - 1:e].mean()) for k, v in rows.items()}
        segs.append({"start": s, "end": e, "realism_psnr": _r(mean["realism"]),
                     "realism_psnr_real": _r(mean["realism_real"]), "sharpness_ratio": _r(mean["sharp"]),
                     "sharpness_ratio_real": _r(mean["sharp_real"]),
                     "motion_ratio": _r(mean["motion"] / max(mean["motion_real"], 1e-9)),
                     "psnr_vs_game": _r(mean["vs_game"]) if s == 1 else None,
                     "psnr_repeat_last": _r(mean["repeat"]) if s == 1 else None})
    count = sum(k for _, k in turns["model"])

    def pooled(pairs):
        return _r(sum(f * k for f, k in pairs if k) / count) if count else None

    result = {"segments": segs, "turn_agreement": pooled(turns["model"]), "turn_agreement_real": pooled(turns["real"]),
              "turn_frames": count, "bank_frames": len(bank)}
    return result, first, seconds, args.episodes * n


def _r(x: float) -> float:
    return round(float(x), 4)


def write_png(path, image: np.ndarray) -> None:
    """A minimal 8-bit RGB PNG (zlib + struct) of uint8 `[H, W, 3]`."""
    h, w, _ = image.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(image, dtype=np.uint8))
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def strip(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Real frames over model frames at `STRIP_FRAMES` (those that exist), x4 nearest, grey gaps."""
    picks = [i - 1 for i in STRIP_FRAMES if i <= len(real)]
    h, w, _ = real.shape[1:]
    sh, sw, g = h * STRIP_SCALE, w * STRIP_SCALE, STRIP_GAP
    out = np.full((2 * sh + 3 * g, len(picks) * (sw + g) + g, 3), 40, dtype=np.uint8)
    for row, frames in enumerate((real, fake)):
        for col, i in enumerate(picks):
            big = frames[i].repeat(STRIP_SCALE, axis=0).repeat(STRIP_SCALE, axis=1)
            y, x = g + row * (sh + g), g + col * (sw + g)
            out[y:y + sh, x:x + sw] = big
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from reverie.engine.keyvalues import parse_key_values
    from reverie.world.games.maps import get_map
    from reverie.world.registry import load_model

    torch.set_num_threads(max(1, args.threads))
    maps = [m.strip() for m in args.maps.split(",") if m.strip()]
    for m in maps:
        get_map(m)  # unknown maps fail here, before anything runs
    if args.episodes < 1 or args.frames < 1 or args.context < 1 or args.bank_frames < 1:
        raise SystemExit("reverie bench freeplay: --episodes, --frames, --context and --bank-frames must be >= 1")
    if args.episodes > BANK_SEED_OFFSET:
        raise SystemExit(f"reverie bench freeplay: at most {BANK_SEED_OFFSET} episodes (the bank's seeds follow)")
    try:
        model = load_model(args.model, **parse_key_values(args.model_arg))
    except Exception as exc:  # unknown model, missing or corrupt weights: say so and stop
        raise SystemExit(f"reverie bench freeplay: cannot load model '{args.model}': {exc}") from None
    settle_heap()  # as the server does before its loop
    spec = model.spec
    if (args.context - 1) % spec.chunk_frames:
        raise SystemExit(f"reverie bench freeplay: --context - 1 must be a multiple of {spec.chunk_frames} frames")
    tics = int((getattr(model, "meta", None) or {}).get("tics_per_step", spec.tics_per_step))
    strip_map = PLAY_MAP if PLAY_MAP in maps else maps[0]
    per_map, seconds, steps, shown = {}, 0.0, 0, None
    for m in maps:
        per_map[m], first, sec, n = score_map(model, m, args, tics)
        seconds, steps = seconds + sec, steps + n
        shown = first if m == strip_map else shown
    h, w, _ = spec.frame_shape
    result = {"model": spec.name, "policy": args.policy, "maps": per_map, "fps": _r(steps / seconds),
              "real_time_fps": _r(spec.real_time_fps), "episodes": args.episodes, "frames": args.frames,
              "context": args.context, "resolution": f"{w}x{h}", "tics_per_step": tics, "seed": args.seed,
              "bank_seed": args.seed + BANK_SEED_OFFSET, "threads": torch.get_num_threads()}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "freeplay.json").write_text(json.dumps(result, indent=1) + "\n")
        write_png(out / "freeplay_strip.png", strip(*shown))
        result_files = f"; wrote {out / 'freeplay.json'} and {out / 'freeplay_strip.png'} ({strip_map})"
    else:
        result_files = ""
    _print_table(result, result_files)
    return finish(result, args.json)


def _fmt(x) -> str:
    return f"{x:8.2f}" if x is not None else f"{'-':>8}"


def _print_table(r: dict, files: str) -> None:
    print(f"free play of {r['model']} at {r['resolution']}: {r['episodes']} wander episodes x {r['frames']} frames "
          f"after {r['context']} real, {r['policy']} memory, {r['tics_per_step']} tics/step")
    for name, m in r["maps"].items():
        print(f"  {name} (bank {m['bank_frames']} frames)")
        print(f"    {'frames':<12}{'realism':>8}{'(real)':>8}{'sharp':>8}{'(real)':>8}{'motion':>8}"
              f"{'vs game':>8}{'repeat':>8}")
        for s in m["segments"]:
            print(f"    {str(s['start']) + '-' + str(s['end']):<12}" + "".join(_fmt(s[k]) for k in (
                "realism_psnr", "realism_psnr_real", "sharpness_ratio", "sharpness_ratio_real", "motion_ratio",
                "psnr_vs_game", "psnr_repeat_last")))
        print(f"    turn agreement {_fmt(m['turn_agreement']).strip()} (real {_fmt(m['turn_agreement_real']).strip()}) "
              f"on {m['turn_frames']} pure-turn frames")
    print(f"  fps {r['fps']:.1f} ({r['threads']} threads; real time {r['real_time_fps']:.2f}){files}")
