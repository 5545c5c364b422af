"""`reverie bench model`: a world model's fidelity against the real game, and its denoising speed.

Protocol (fixed seeds, held-out map `world.games.maps.DEFAULT_EVAL_MAP` unless `--map`):

* Ground truth: `--episodes` real-game episodes of `--steps` steps, alternating the `wander` and
  `random` exploration drivers (seeds `--seed + i`), at the model's training frame skip (`tics_per_step` from its
  checkpoint metadata, else `--tics-per-step`).
* `tf_psnr`: teacher forcing. The real frames are committed as history; every frame from
  `--context` on is sampled from noise through all `spec.steps` with the real action, compared with the
  real frame, then the *real* frame is committed. `tf_psnr_repeat_last` predicts the previous real frame.
* `ar_psnr[h]`: autoregressive. From `--context` real frames at several starts per episode, the model
  plays the real actions on its own output for 32 frames; the mean per-frame PSNR over the first h frames
  (h = 8, 16, 32). `ar_psnr_repeat_last[h]` repeats the last real context frame.
* Memory for both: `--policy` (default `dual`, the policy `reverie play` uses) at its default budget;
  `--policy full` keeps every frame (the session then outgrows the model's 17-frame training windows).
* Both drive `engine.session.Session`s: the first real frame is the seed frame, the other context frames
  are committed with `Session.observe`, teacher forcing samples with `Session.predict` (noise of chunk `t`,
  the frame's index in the episode) and then observes the real frame, the autoregressive run plays
  `Session.step`. Retrieval gets no pose (`pose_source` None), as this bench always ran.
* `fps_denoise`: frames per second of `Session.generate` (all steps + commit + decode, one frame per
  chunk) on `memory.MemoryManager.create(spec)` (the default policy and budget), on this machine.
* `checkpoint_mb` / `load_s`: size of the weights file and the time `load_model` took.

PSNR is `engine.bench.metrics.psnr` (per frame on uint8 RGB, capped at 100 dB for identical frames),
averaged over frames.
"""

from __future__ import annotations

import argparse
import time

from reverie.engine.bench.metrics import psnr
from reverie.engine.bench.report import finish
from reverie.engine.heap import settle_heap

HORIZONS = (8, 16, 32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.keyvalues import add_model_arguments

    add_model_arguments(parser)
    add_heldout_arguments(parser)
    parser.add_argument("--fps-frames", type=int, default=48, help="frames timed for fps_denoise")
    parser.add_argument("--policy", default="dual", help="memory policy for the fidelity runs (default budget)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared machine more threads stall on each other)")


def add_heldout_arguments(parser: argparse.ArgumentParser) -> None:
    """The held-out episodes `bench model` scores on (and `bench ceiling` bounds): map, count, length,
    context, seed and frame skip."""
    parser.add_argument("--map", default=None, help="real-game map (default: the held-out eval map)")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=120, help="steps per episode")
    parser.add_argument("--context", type=int, default=4, help="real context frames before the first scored frame")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first held-out episode")
    parser.add_argument("--tics-per-step", type=int, default=4, help="frame skip when the model does not say")


def _no_pose(frame_clock: int) -> None:
    return None


def _session(model, ep, start: int, context: int, seed: int, policy: str):
    """A session on `policy` started from episode frame `start`, with frames `start + 1 .. start + context - 1`
    observed as history (the frame's own action with each)."""
    from reverie.engine.session import Session

    session = Session(model, ep.frames[start], policy=policy, seed=seed, pose_source=_no_pose,
                      seed_action=int(ep.actions[start]))
    session.observe(ep.frames[start + 1:start + context], ep.actions[start + 1:start + context])
    return session


def teacher_forced(model, ep, context: int, seed: int, policy: str = "dual") -> tuple[list[float], list[float]]:
    session = _session(model, ep, 0, context, seed, policy)
    model_psnr, repeat_psnr = [], []
    for t in range(context, len(ep)):
        pred = session.predict([int(ep.actions[t])], chunk_index=t).frames[0]
        model_psnr.append(psnr(pred, ep.frames[t]))
        repeat_psnr.append(psnr(ep.frames[t - 1], ep.frames[t]))
        session.observe(ep.frames[t:t + 1], ep.actions[t:t + 1])  # the real frame, not the model's
    return model_psnr, repeat_psnr


def autoregressive(model, ep, start: int, context: int, seed: int, policy: str = "dual") -> tuple[list[float], list[float]]:
    session = _session(model, ep, start, context, seed, policy)
    last = ep.frames[start + context - 1]
    model_psnr, repeat_psnr = [], []
    for i in range(max(HORIZONS)):
        t = start + context + i
        model_psnr.append(psnr(session.step(int(ep.actions[t])).frame, ep.frames[t]))
        repeat_psnr.append(psnr(last, ep.frames[t]))
    return model_psnr, repeat_psnr


def measure_fps(model, frames: int, seed: int) -> tuple[float, str]:
    import numpy as np

    from reverie.engine.session import Session
    from reverie.memory import MemoryManager

    spec = model.spec
    session = Session(model, np.full(spec.frame_shape, 128, np.uint8), seed=seed,
                      memory_factory=lambda spec, policy, budget: MemoryManager.create(spec))
    acts = [spec.action_space.noop] * spec.frames_per_chunk
    warm = 8
    t0 = 0.0
    for i in range(warm + frames):
        if i == warm:
            t0 = time.perf_counter()
        session.generate(acts)
    elapsed = time.perf_counter() - t0
    return frames * spec.frames_per_chunk / elapsed, str(session.memory.stats().get("policy", ""))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from reverie.engine.keyvalues import parse_key_values
    from reverie.world.dit.data import play_episode
    from reverie.world.games.maps import DEFAULT_EVAL_MAP, get_map
    from reverie.world.registry import load_model

    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    try:
        model = load_model(args.model, **parse_key_values(args.model_arg))
    except Exception as exc:  # unknown model, missing or corrupt weights: say so and stop
        raise SystemExit(f"reverie bench model: cannot load model '{args.model}': {exc}") from None
    load_s = time.perf_counter() - t0
    settle_heap()  # as the server does before its loop
    meta = getattr(model, "meta", {}) or {}
    map_name = args.map or DEFAULT_EVAL_MAP
    if get_map(map_name).role != "eval":
        print(f"warning: map '{map_name}' is not a held-out map", flush=True)
    tics = int(meta.get("tics_per_step", args.tics_per_step))
    h, w, _ = model.spec.frame_shape
    horizon = max(HORIZONS)
    if args.steps < args.context + horizon:
        raise SystemExit(f"--steps must be >= context + {horizon}")
    episodes = [play_episode(map_name, ("wander", "random")[i % 2], args.steps, args.seed + i, tics, (w, h))
                for i in range(args.episodes)]
    tf_m, tf_r = [], []
    ar_m = {k: [] for k in HORIZONS}
    ar_r = {k: [] for k in HORIZONS}
    for e, ep in enumerate(episodes):
        m, r = teacher_forced(model, ep, args.context, args.seed + e, args.policy)
        tf_m += m
        tf_r += r
        for start in range(0, args.steps - args.context - horizon + 1, horizon):
            m, r = autoregressive(model, ep, start, args.context, args.seed + e, args.policy)
            for k in HORIZONS:
                ar_m[k].append(float(np.mean(m[:k])))
                ar_r[k].append(float(np.mean(r[:k])))
    fps, policy = measure_fps(model, args.fps_frames, args.seed)
    ckpt = meta.get("checkpoint_path")
    import os

    result = {
        "model": model.spec.name, "resolution": f"{w}x{h}", "map": map_name, "tics_per_step": tics,
        "episodes": len(episodes), "frames_scored": len(tf_m), "ar_segments": len(ar_m[HORIZONS[0]]),
        "tf_psnr": round(float(np.mean(tf_m)), 3), "tf_psnr_repeat_last": round(float(np.mean(tf_r)), 3),
        "ar_psnr": {str(k): round(float(np.mean(v)), 3) for k, v in ar_m.items()},
        "ar_psnr_repeat_last": {str(k): round(float(np.mean(v)), 3) for k, v in ar_r.items()},
        "fidelity_policy": args.policy, "steps": list(model.spec.steps),
        "fps_denoise": round(fps, 2), "fps_policy": policy, "threads": torch.get_num_threads(),
        "checkpoint_mb": round(os.path.getsize(ckpt) / 1e6, 3) if ckpt and os.path.exists(ckpt) else None,
        "load_s": round(load_s, 3), "checkpoint_step": meta.get("step"),
    }
    _print_table(result)
    return finish(result, args.json)


def _print_table(r: dict) -> None:
    print(f"model {r['model']} at {r['resolution']} on {r['map']} ({r['episodes']} episodes, tics/step "
          f"{r['tics_per_step']}, sampler steps {r['steps']}, {r['fidelity_policy']} memory)")
    print(f"  {'metric':<16}{'model':>10}{'repeat-last':>14}")
    print(f"  {'tf_psnr':<16}{r['tf_psnr']:>10.2f}{r['tf_psnr_repeat_last']:>14.2f}")
    for k in HORIZONS:
        print(f"  {'ar_psnr[' + str(k) + ']':<16}{r['ar_psnr'][str(k)]:>10.2f}{r['ar_psnr_repeat_last'][str(k)]:>14.2f}")
    print(f"  fps_denoise {r['fps_denoise']:.1f} ({r['fps_policy']} memory, {r['threads']} threads); "
          f"checkpoint {r['checkpoint_mb']} MB, loaded in {r['load_s']:.2f} s")
