"""`reverie bench memory`: every memory policy at several budgets on one seeded rollout.

Protocol, for a model (`--model`, default "default") and a horizon of N frames:

1. Ground truth: the real game (held-out map, `wander` driver) gives N frames, their actions and poses;
   `go-and-return` episodes give revisits (frames where the player is back where a loop started).
2. Shadow mode: the `full` cache drives the model on the game's actions; at every layer and denoising
   step the same queries also attend through every policy's view (each policy is fed the reference's
   clean chunks). `attn_rel_err` = mean `||O_policy - O_full|| / ||O_full||`; `retained_mass` = mean
   full-cache softmax mass (sampled queries, all heads) on the tokens the policy still shows that head
   (a merged slot counts as its newest member only, so this understates `tempcache`; quantized tokens
   count as kept).
3. Free-running: each policy generates its own rollout on the same actions with the same noise (drawn
   from seed, chunk and step): `psnr_vs_full` against the full-cache rollout, `psnr_vs_game` against the
   real frames, `revisit_psnr` = the model's frames on return vs the real game's frames at those steps.
   The timed rollouts run in lockstep (`engine.bench.episodes.free_runs`: every policy generates chunk i,
   in a rotating order, before any generates chunk i + 1), so every policy is timed under the same machine
   conditions. `ms_per_frame` is the mean wall time per generated frame over the whole rollout (where
   `full` holds on average half the horizon), `ms_per_frame_at_horizon` the mean over its last 64 frames
   (where `full` holds about the horizon: the figure to compare policies' speed by; `--horizon 320` times
   a steady state after 256 frames of history), `overhead_ms` the policy's own share per section
   (scoring, compaction, merge, archive, retrieval, head profiling; measured on the CPU only, since the
   section timers would add device syncs on a GPU). PSNR is `engine.bench.metrics.psnr` (capped at 100 dB:
   identical frames).

Every rollout is a `Session` (`engine.bench.episodes.free_run`) on the memory under test, or on the
shadow (`engine.bench.shadow.ShadowMemory`); retrieval gets the model's dead-reckoned pose when the model
has a pose head, else the real game's (none with `--no-game`).

`--no-shadow` skips step 2 (its three figures are null). `--attention-only` skips all of that and times each policy's view, attention and commit alone on random
keys after the horizon (`engine.bench.attention_alone`): a memory's cost at 4096 frames in seconds.

Budgets are fractions of the full cache at the horizon; `full` runs at 1 only (it is the reference).
The last line with `--json`: `{"horizon", "model", "device", "rows": [{"policy", "budget_frac",
"attn_rel_err", "retained_mass", "psnr_vs_full", "psnr_vs_game", "revisit_psnr", "kv_bytes",
"ms_per_frame", "ms_per_frame_at_horizon", "overhead_ms"}, ...]}`.
"""

from __future__ import annotations

import argparse

from reverie.engine.bench.episodes import free_run, free_runs, game_episode, random_episode
from reverie.engine.bench.metrics import psnr
from reverie.engine.bench.report import finish
from reverie.engine.bench.shadow import ShadowMemory
from reverie.engine.heap import settle_heap
from reverie.engine.keyvalues import add_model_arguments, parse_key_values

AT_HORIZON_FRAMES = 64  # ms_per_frame_at_horizon: the last frames of a rollout, when `full` holds ~the horizon
DEFAULT_FRACS = (1.0, 0.5, 0.25, 0.125)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--horizon", type=int, default=256, help="frames per rollout (default 256)")
    parser.add_argument("--policies", default=None, help="comma-separated policy names (default: all)")
    parser.add_argument("--fracs", default=",".join(str(f) for f in DEFAULT_FRACS),
                        help="budget fractions of the full cache at the horizon (default 1,0.5,0.25,0.125)")
    parser.add_argument("--map", default=None, help="real-game map (default: the held-out eval map)")
    parser.add_argument("--revisit-episodes", type=int, default=2, help="go-and-return episodes (default 2)")
    parser.add_argument("--revisit-out", type=_step_range, default=(14, 26), metavar="MIN,MAX",
                        help="steps a go-and-return loop walks out before it turns back (default 14,26; longer "
                             "loops return after their start has left a small recent window)")
    parser.add_argument("--no-game", action="store_true",
                        help="no real game: seeded random actions, no psnr_vs_game / revisit_psnr")
    parser.add_argument("--shadow-queries", type=int, default=64, help="queries sampled for retained mass")
    parser.add_argument("--no-shadow", action="store_true",
                        help="skip shadow mode (no attn_rel_err, retained_mass, psnr_vs_full): the timed rollouts and "
                             "revisits alone, e.g. `full` at a long horizon, where the shadow pass takes longest")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="PolicyConfig override for every policy but full, repeatable (e.g. position_span=512)")
    parser.add_argument("--attention-only", action="store_true",
                        help="time each policy's view, attention and commit alone after --horizon frames of random "
                             "keys (no game, no rollouts, no quality figures): seconds where a rollout takes hours")
    parser.add_argument("--chunks", type=int, default=16, help="chunks timed with --attention-only (default 16)")


def _step_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX (two integers), got '{text}'") from None
    if not 1 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"need 1 <= MIN <= MAX, got {lo},{hi}")
    return lo, hi


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The model (`--model`, `--model-arg`) and how a memory bench runs it: seed, device, threads."""
    add_model_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the model's device)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: small ops stall on a busy machine with more)")


# ---------------------------------------------------------------------------------------------- shared
def load_world_model(args):
    import torch

    from reverie.world.registry import load_model

    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(args.model, **parse_key_values(args.model_arg))
    except Exception as exc:  # unknown model, missing weights: say so and stop
        raise SystemExit(f"reverie bench: cannot load model '{args.model}': {exc}") from None
    settle_heap()  # as the server does before its loop
    return model


def _mean_psnr(a, b) -> float:
    """Mean per-frame `psnr` of two uint8 frame stacks (NaN when empty)."""
    import numpy as np

    return float(np.mean(psnr(a, b))) if len(a) else float("nan")


def make_memories(spec, policies, fracs, horizon, device, overrides=None):
    from reverie.memory import BudgetError, MemoryManager

    out, refused = {}, {}
    for policy in policies:
        for frac in ([1.0] if policy == "full" else fracs):
            extra = {} if policy == "full" else dict(overrides or {})
            try:
                out[(policy, frac)] = MemoryManager.create(spec, policy=policy, budget_frac=frac, device=device,
                                                           horizon_frames=horizon + spec.chunk_frames, **extra)
            except BudgetError as exc:
                refused[(policy, frac)] = str(exc)
    return out, refused


def run(args: argparse.Namespace) -> int:
    from reverie.memory import MemoryManager, available_policies
    from reverie.world.games.maps import DEFAULT_EVAL_MAP

    model = load_world_model(args)
    spec, device = model.spec, args.device or model.device
    n = args.horizon
    policies = args.policies.split(",") if args.policies else available_policies()
    fracs = [float(f) for f in args.fracs.split(",")]
    if args.attention_only:
        return run_attention_only(args, spec, device, policies, fracs)
    pose_from = "model" if spec.has_pose_head else ("game" if not args.no_game else "none")
    if args.no_game:
        play, revisit_eps = random_episode(spec, args.seed, n), []
    else:
        map_name = args.map or DEFAULT_EVAL_MAP
        play = game_episode(spec, map_name, args.seed, n, "wander")
        out_min, out_max = args.revisit_out
        revisit_eps = [game_episode(spec, map_name, args.seed + 1 + e, n, "go-and-return", out_min=out_min,
                                    out_max=out_max) for e in range(args.revisit_episodes)]

    # shadow mode: the full cache drives; its rollout is also the free-running reference
    overrides = parse_key_values(args.set, "--set")
    shadow_mems, refused = make_memories(spec, policies, fracs, n, device, overrides)
    ref_frames, shadow_stats = None, {key: (None, None) for key in shadow_mems}
    if not args.no_shadow:
        full = MemoryManager.create(spec, policy="full", horizon_frames=n + spec.chunk_frames, device=device)
        shadow = ShadowMemory(full, shadow_mems, args.shadow_queries)
        ref_frames, _ = free_run(model, shadow, play, args.seed, n, pose_from)
        shadow_stats = {key: (_mean(shadow.err[key]), _mean(shadow.mass[key])) for key in shadow_mems}
        del shadow
    del shadow_mems

    rows = []
    mems, _ = make_memories(spec, policies, fracs, n, device, overrides)
    for mem in mems.values():
        mem.profile = not str(device).startswith("cuda")  # section timers sync the device: CPU only
    timed = free_runs(model, mems, play, args.seed, n, pose_from)  # in lockstep: paired timings
    for (policy, frac), mem in mems.items():
        frames, times = timed.pop((policy, frac))
        generated = max(len(times), 1)
        tail = times[-AT_HORIZON_FRAMES:]
        err, mass = shadow_stats[(policy, frac)]
        row = {"policy": policy, "budget_frac": frac, "attn_rel_err": err, "retained_mass": mass,
               "psnr_vs_full": _mean_psnr(frames[1:], ref_frames[1:]) if ref_frames is not None else None,
               "psnr_vs_game": _mean_psnr(frames[1:], play.frames[1:n]) if play.frames is not None else None,
               "revisit_psnr": None, "kv_bytes": mem.kv_bytes(),
               "ms_per_frame": 1000.0 * sum(times) / generated,
               "ms_per_frame_at_horizon": 1000.0 * sum(tail) / max(len(tail), 1),
               "overhead_ms": {k: 1000.0 * v / generated for k, v in sorted(mem.timings.items())}}
        if revisit_eps:
            vals = []
            mem.profile = False
            for ep in revisit_eps:
                mem.reset()
                out, _ = free_run(model, mem, ep, args.seed, n, pose_from)
                vals += [psnr(out[i], ep.frames[i]) for i in ep.revisits if i < len(out)]
            row["revisit_psnr"] = sum(vals) / len(vals) if vals else None
        rows.append(row)
    print_table(rows, refused, n, args.model, pose_from)
    return finish({"horizon": n, "model": args.model, "device": str(device), "pose": pose_from, "set": overrides,
                   "revisits": sum(len(e.revisits) for e in revisit_eps),
                   "revisit_out": list(args.revisit_out) if revisit_eps else None,
                   "revisit_gap_frames": [g for e in revisit_eps for g in e.loop_gaps],
                   "refused": {f"{p}@{f}": m for (p, f), m in refused.items()}, "rows": rows}, args.json)


def run_attention_only(args, spec, device, policies, fracs) -> int:
    """`--attention-only` (`engine.bench.attention_alone`): the memories' own ms per frame at the horizon."""
    from reverie.engine.bench.attention_alone import time_memories

    frames = args.horizon + args.chunks * spec.chunk_frames  # budgets and `full`'s preallocation hold them all
    mems, refused = make_memories(spec, policies, fracs, frames, device, parse_key_values(args.set, "--set"))
    ms = time_memories(spec, mems, args.horizon, args.chunks, args.seed, device)
    rows = [{"policy": p, "budget_frac": f, "ms_per_frame_at_horizon": ms[(p, f)], "kv_bytes": mem.kv_bytes()}
            for (p, f), mem in mems.items()]
    print(f"memory alone (view, attention, commit; random keys) after {args.horizon} frames, model '{args.model}' "
          f"geometry, median of {args.chunks} chunks")
    for r in rows:
        print(f"  {r['policy']:>10} {r['budget_frac']:>6}  {r['ms_per_frame_at_horizon']:8.2f} ms/frame  "
              f"{r['kv_bytes']:>12,} bytes")
    for (p, f), msg in refused.items():
        print(f"  {p}@{f}: refused: {msg}")
    return finish({"horizon": args.horizon, "model": args.model, "device": str(device), "attention_only": True,
                   "chunks": args.chunks, "set": parse_key_values(args.set, "--set"),
                   "refused": {f"{p}@{f}": m for (p, f), m in refused.items()}, "rows": rows}, args.json)


def _mean(acc) -> float | None:
    return acc[0] / acc[1] if acc[1] else None


def print_table(rows, refused, horizon, model, pose_from) -> None:
    cols = ("policy", "budget_frac", "attn_rel_err", "retained_mass", "psnr_vs_full", "psnr_vs_game",
            "revisit_psnr", "kv_bytes", "ms_per_frame", "ms_per_frame_at_horizon")
    print(f"memory policies on model '{model}', horizon {horizon} frames, retrieval pose from: {pose_from}")
    print("  ".join(f"{c:>13}" for c in cols) + "  overhead ms/frame")
    for r in rows:
        cells = [_cell(r[c]) for c in cols]
        over = ", ".join(f"{k} {v:.2f}" for k, v in r["overhead_ms"].items())
        print("  ".join(f"{c:>13}" for c in cells) + "  " + over)
    for (p, f), msg in refused.items():
        print(f"refused {p} at {f}: {msg}")


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
