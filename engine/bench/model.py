"""`reverie bench model`: a world model's fidelity against the real game, and its denoising speed.

Protocol (fixed seeds, held-out map `world.games.maps.DEFAULT_EVAL_MAP` unless `--map`):

* Ground truth: `--episodes` real-game episodes of `--steps` steps, alternating the `wander` and
  `random` policies (seeds `--seed + i`), at the model's training frame skip (`tics_per_step` from its
  checkpoint metadata, else `--tics-per-step`).
* `tf_psnr`: teacher forcing. The real frames are committed as history; every frame from
  `--context` on is sampled from noise through all `spec.steps` with the real action, compared with the
  real frame, then the *real* frame is committed. `tf_psnr_repeat_last` predicts the previous real frame.
* `ar_psnr[h]`: autoregressive. From `--context` real frames at several starts per episode, the model
  plays the real actions on its own output for 32 frames; the mean per-frame PSNR over the first h frames
  (h = 8, 16, 32). `ar_psnr_repeat_last[h]` repeats the last real context frame.
* Memory for both: `--policy` (default `dual`, the policy `reverie play` uses) at its default budget;
  `--policy full` keeps every frame (the session then outgrows the model's 17-frame training windows).
* `fps_denoise`: frames per second of `generate_chunk` (all steps + commit, one frame per chunk) through
  `memory.MemoryManager.create(spec)` (the default policy and budget), on this machine.
* `checkpoint_mb` / `load_s`: size of the weights file and the time `load_model` took.

PSNR is per frame on uint8 RGB, capped at 50 dB (identical frames), averaged over frames.
"""

from __future__ import annotations

import argparse
import json
import time

PSNR_CAP = 50.0
HORIZONS = (8, 16, 32)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="registered world model (default: default)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword for the model factory, repeatable (e.g. checkpoint=runs/x/model.safetensors)")
    parser.add_argument("--map", default=None, help="real-game map (default: the held-out eval map)")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=120, help="steps per episode")
    parser.add_argument("--context", type=int, default=4, help="real context frames before predicting")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first held-out episode")
    parser.add_argument("--tics-per-step", type=int, default=4, help="frame skip when the model does not say")
    parser.add_argument("--fps-frames", type=int, default=48, help="frames timed for fps_denoise")
    parser.add_argument("--policy", default="dual", help="memory policy for the fidelity runs (default budget)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared machine more threads stall on each other)")


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 images (numpy), capped at PSNR_CAP."""
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse <= 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * np.log10(255.0 ** 2 / mse))


def _memory(spec, policy: str):
    from memory import MemoryManager

    return MemoryManager.create(spec, policy=policy)


def _commit_real(model, mem, frame, action: int, ctx) -> None:
    """Commit one real frame as a chunk of its own."""
    mem.begin_chunk()
    _commit_frame(model, mem, frame, action, ctx)
    mem.end_chunk()


def _commit_frame(model, mem, frame, action: int, ctx) -> None:
    import torch

    from engine.sampler import commit_frames

    with torch.inference_mode():
        commit_frames(model, mem, model.encode(torch.from_numpy(frame)[None]), torch.tensor([action]), ctx)


def _sample(model, mem, action: int, seed: int, chunk: int, ctx):
    """All denoising steps for one frame (no commit); returns clean latents `[1, T, C]`."""
    import torch

    from engine.sampler import sample_chunk

    return sample_chunk(model, mem, torch.tensor([action]), seed=seed, chunk_index=chunk, context=ctx)


def teacher_forced(model, ep, context: int, seed: int, policy: str = "dual") -> tuple[list[float], list[float]]:
    import torch

    from engine.sampler import FrameContext

    mem = _memory(model.spec, policy)
    ctx = FrameContext(model.spec)
    model_psnr, repeat_psnr = [], []
    for t in range(len(ep)):
        if t >= context:
            mem.begin_chunk()
            x0 = _sample(model, mem, int(ep.actions[t]), seed, t, ctx)
            with torch.inference_mode():
                pred = model.decode(x0)[0].numpy()
            model_psnr.append(psnr(pred, ep.frames[t]))
            repeat_psnr.append(psnr(ep.frames[t - 1], ep.frames[t]))
            _commit_frame(model, mem, ep.frames[t], int(ep.actions[t]), ctx)  # the real frame, not the model's
            mem.end_chunk()
        else:
            _commit_real(model, mem, ep.frames[t], int(ep.actions[t]), ctx)
    return model_psnr, repeat_psnr


def autoregressive(model, ep, start: int, context: int, seed: int, policy: str = "dual") -> tuple[list[float], list[float]]:
    import torch

    from engine.sampler import FrameContext, generate_chunk

    mem = _memory(model.spec, policy)
    ctx = FrameContext(model.spec)
    for t in range(start, start + context):
        _commit_real(model, mem, ep.frames[t], int(ep.actions[t]), ctx)
    last = ep.frames[start + context - 1]
    model_psnr, repeat_psnr = [], []
    for i in range(max(HORIZONS)):
        t = start + context + i
        mem.begin_chunk()
        x0, _ = generate_chunk(model, mem, torch.tensor([int(ep.actions[t])]), seed=seed, chunk_index=i, context=ctx)
        mem.end_chunk()
        with torch.inference_mode():
            pred = model.decode(x0)[0].numpy()
        model_psnr.append(psnr(pred, ep.frames[t]))
        repeat_psnr.append(psnr(last, ep.frames[t]))
    return model_psnr, repeat_psnr


def fps_denoise(model, frames: int, seed: int) -> tuple[float, str]:
    import torch

    from engine.sampler import FrameContext, generate_chunk
    from memory import MemoryManager

    mem = MemoryManager.create(model.spec)
    ctx = FrameContext(model.spec)
    acts = torch.zeros(model.spec.chunk_frames, dtype=torch.long)
    warm = 8
    t0 = 0.0
    for i in range(warm + frames):
        if i == warm:
            t0 = time.perf_counter()
        mem.begin_chunk()
        generate_chunk(model, mem, acts, seed=seed, chunk_index=i, context=ctx)
        mem.end_chunk()
    elapsed = time.perf_counter() - t0
    return frames * model.spec.chunk_frames / elapsed, str(mem.stats().get("policy", ""))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from engine.keyvalues import parse_key_values
    from world.dit.data import play_episode
    from world.games.maps import DEFAULT_EVAL_MAP, get_map
    from world.registry import load_model

    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    try:
        model = load_model(args.model, **parse_key_values(args.model_arg))
    except Exception as exc:  # unknown model, missing or corrupt weights: say so and stop
        raise SystemExit(f"reverie bench model: cannot load model '{args.model}': {exc}") from None
    load_s = time.perf_counter() - t0
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
    fps, policy = fps_denoise(model, args.fps_frames, args.seed)
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
    if args.json:
        print(json.dumps(result))
    return 0


def _print_table(r: dict) -> None:
    print(f"model {r['model']} at {r['resolution']} on {r['map']} ({r['episodes']} episodes, tics/step "
          f"{r['tics_per_step']}, sampler steps {r['steps']}, {r['fidelity_policy']} memory)")
    print(f"  {'metric':<16}{'model':>10}{'repeat-last':>14}")
    print(f"  {'tf_psnr':<16}{r['tf_psnr']:>10.2f}{r['tf_psnr_repeat_last']:>14.2f}")
    for k in HORIZONS:
        print(f"  {'ar_psnr[' + str(k) + ']':<16}{r['ar_psnr'][str(k)]:>10.2f}{r['ar_psnr_repeat_last'][str(k)]:>14.2f}")
    print(f"  fps_denoise {r['fps_denoise']:.1f} ({r['fps_policy']} memory, {r['threads']} threads); "
          f"checkpoint {r['checkpoint_mb']} MB, loaded in {r['load_s']:.2f} s")
