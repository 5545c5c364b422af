"""`reverie train`: train the default world model (the block-causal DiT of `world.dit`).

    reverie train --config default --out runs/default --seed 0
    reverie train --config default --data rollouts/train/ --out runs/default   # from recorded rollouts
    reverie train --config default --out runs/default --resume                 # continue a run
    reverie train --config finetune --init default --out runs/ft               # fine-tune the bundled model
    reverie train --config warp --init default --out runs/warp                 # grow the camera warp onto it
    reverie train --config recall --init default --set revisit_prob=0.9 --out runs/r9   # any TrainConfig field
    reverie train --config default --device cuda --precision bf16 --out runs/gpu      # on a GPU
    reverie train --config flow --init default --workers 8 --minutes 7 --out runs/lent  # a GPU lent for minutes
    reverie train --config render --out runs/render                            # the renderer, over the bundled DiT

Without `--data`, the run records its own episodes from the real game on the train maps (the config's
data recipe, seeded), so a run is reproducible from `--config` and `--seed` alone. Writes
`OUT/model.safetensors` (+ `.json`), `OUT/train_state.safetensors` (resume), `OUT/loss.csv`, `OUT/loss.png`.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.world.dit.config import TRAIN_PRESETS
    from reverie.world.dit.render_train import RENDER_PRESETS

    presets = ", ".join([*TRAIN_PRESETS, *RENDER_PRESETS])
    parser.add_argument("--config", default="default", help=f"training preset ({presets}); the render* presets "
                        "train the renderer over a frozen DiT (--init, default: the bundled one)")
    parser.add_argument("--out", default=None, help="run directory (default runs/train-CONFIG-seedS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", nargs="+", default=None, help="rollout directories recorded on a train map")
    parser.add_argument("--steps", type=int, default=None, help="override the number of optimizer steps")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default from the config)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a TrainConfig field of the preset, repeatable (e.g. revisit_prob=0.9, "
                             "'maps=[\"maze\"]')")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/train_state.safetensors")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT",
                        help="warm-start from this model checkpoint's weights (fine-tuning; e.g. the bundled "
                             "model: --init default)")
    parser.add_argument("--snapshots", type=int, default=0, metavar="N",
                        help="keep the latest N checkpoints under OUT/snapshots/ (for averaging at release)")
    parser.add_argument("--device", default="auto",
                        help="where the network trains: auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="bf16: autocast matmuls and attention, fp32 weights and optimizer (auto: bf16 on "
                             "CUDA, fp32 on the CPU)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes recording the recipe's episodes (default 1; the episodes are the same)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="fit the run to this wall-clock budget: after a few steps the schedule is shortened "
                             "to what the measured pace finishes in time (the steps chosen are recorded)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from reverie.world.dit.render_train import RENDER_PRESETS

    if args.config in RENDER_PRESETS:
        return run_render(args)
    from reverie.world.dit.config import train_config
    from reverie.world.dit.data import find_rollouts, generate_episodes, load_episode
    from reverie.world.dit.train import train

    from reverie.engine.devices import resolve_device
    from reverie.engine.keyvalues import parse_key_values

    try:
        cfg = train_config(args.config).with_overrides(**parse_key_values(args.set, "--set"))
        cfg = cfg.with_overrides(steps=args.steps, batch=args.batch, lr=args.lr, threads=args.threads)
        device = resolve_device(args.device)
        if args.workers < 1 or (args.minutes is not None and args.minutes <= 0):
            raise ValueError("--workers must be >= 1 and --minutes > 0")
    except (TypeError, ValueError) as exc:  # unknown field, a value of the wrong kind, an unusable device
        print(f"reverie train: {exc}", file=sys.stderr)
        return 2
    precision = args.precision if args.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    out = args.out or f"runs/train-{args.config}-seed{args.seed}"
    progress = not args.no_progress
    tics = cfg.tics_per_step
    if args.data:
        tics = _check_train_maps(args.data)
        episodes = [load_episode(p) for p in find_rollouts(args.data)]
        source = {"data": [e.name for e in episodes]}
    else:
        episodes = generate_episodes(cfg, args.seed, progress=progress, workers=args.workers)
        source = {"data": "recipe"}
    frames = sum(len(e) for e in episodes)
    print(f"training '{args.config}' on {len(episodes)} episodes ({frames} frames) on {device} ({precision}) "
          f"-> {out}", flush=True)
    command = "reverie train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["train"] else ""
    init = args.init
    if init == "default":
        from reverie.world.dit.default import DEFAULT_CHECKPOINT

        init = DEFAULT_CHECKPOINT
    path = train(episodes, cfg, out, seed=args.seed, resume=args.resume, progress=progress, init=init,
                 keep_snapshots=max(0, args.snapshots), device=device, precision=precision,
                 time_budget_s=None if args.minutes is None else 60.0 * args.minutes,
                 extra_meta={"command": command, "tics_per_step": tics, **source})
    print(f"model: {path}")
    return 0


def _check_train_maps(paths) -> int:
    """Refuse rollouts recorded on a held-out map (they are for evaluation only) or at mixed frame skips;
    returns the recordings' game tics per step."""
    import json

    from reverie.world.dit.data import find_rollouts
    from reverie.world.games.maps import get_map

    tics: set[int] = set()
    for d in find_rollouts(paths):
        meta = json.loads((d / "meta.json").read_text())
        name = meta.get("map")
        if name and get_map(name).role != "train":
            raise SystemExit(f"reverie train: {d} was recorded on '{name}', a held-out map; use train maps only")
        tics.add(int((meta.get("config") or {}).get("game", {}).get("tics_per_step", 1)))
    if len(tics) != 1:
        raise SystemExit(f"reverie train: the rollouts mix frame skips (tics per step {sorted(tics)}); use one")
    return tics.pop()


def run_render(args: argparse.Namespace) -> int:
    """`reverie train --config render...`: the renderer over a frozen DiT (`world.dit.render_train`)."""
    from reverie.world.dit.data import generate_episodes
    from reverie.world.dit.default import DEFAULT_CHECKPOINT, load_net
    from reverie.world.dit.render_train import RENDER_PRESETS, train_renderer

    from reverie.engine.keyvalues import parse_key_values

    try:
        cfg = RENDER_PRESETS[args.config].with_overrides(**parse_key_values(args.set, "--set"))
        cfg = cfg.with_overrides(steps=args.steps, batch=args.batch, lr=args.lr, threads=args.threads)
    except (TypeError, ValueError) as exc:
        print(f"reverie train: {exc}", file=sys.stderr)
        return 2
    if args.data or args.device not in ("auto", "cpu"):
        print("reverie train: the renderer trains from its data recipe on the CPU (no --data, no --device)",
              file=sys.stderr)
        return 2
    init = DEFAULT_CHECKPOINT if args.init in (None, "default") else args.init
    dit, dit_meta = load_net(init)
    if int(dit_meta.get("tics_per_step", cfg.tics_per_step)) != cfg.tics_per_step:
        print(f"reverie train: the DiT was trained at {dit_meta.get('tics_per_step')} tics per step, this run "
              f"records {cfg.tics_per_step}", file=sys.stderr)
        return 2
    out = args.out or f"runs/train-{args.config}-seed{args.seed}"
    progress = not args.no_progress
    episodes = generate_episodes(cfg.data_config(), args.seed, progress=progress)
    print(f"training '{args.config}' on {len(episodes)} episodes over the DiT {init} -> {out}", flush=True)
    command = "reverie train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["train"] else ""
    path = train_renderer(episodes, dit, cfg, out, seed=args.seed, resume=args.resume, progress=progress,
                          keep_snapshots=max(0, args.snapshots),
                          extra_meta={"command": command, "tics_per_step": cfg.tics_per_step,
                                      "dit": str(init)})
    print(f"renderer: {path}")
    return 0
