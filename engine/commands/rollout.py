"""`reverie rollout`: run a world model on a rollout's actions, starting from its first frames.

    reverie rollout --model default --context data/eval/ep000 --out runs/model-ep000
    reverie rollout --model default --context data/eval/ep000 --actions moves.json --out runs/x

The first `--context-frames` frames of the context rollout (with their recorded actions) are committed
to the model's memory as history and copied to the output: the first is a `Session`'s seed frame, the
later ones are observed a chunk at a time when they make whole chunks (`frames_per_chunk`), else each as a
chunk of its own (held for the chunk, like the seed frame); then the session generates one frame per
action, a chunk at a time: the context rollout's own later actions (translated into the model's action
space by button name), or the JSON action file (`world.action_files`: names, maps of buttons and axes,
vectors), applied after the context. Retrieval gets no pose. The output is a rollout directory (`engine.rollout`) with source
`model:NAME`, so any model can be compared with the real game step by step (`reverie inspect`, PSNR).
Noise comes from `--seed`, chunk and step (`engine.sampler`), so the same command gives the same frames.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.keyvalues import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--context", required=True, metavar="ROLLOUT", help="rollout whose first frames start the model")
    parser.add_argument("--context-frames", type=int, default=4, help="real frames committed as history (default 4)")
    parser.add_argument("--actions", default=None, metavar="FILE",
                        help="JSON list of action names to play after the context (default: the context's own)")
    parser.add_argument("--steps", type=int, default=None, help="generate at most this many frames")
    parser.add_argument("--policy", default=None,
                        help="memory policy (default: full; none for a model without an attention cache)")
    parser.add_argument("--budget-bytes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="output rollout directory (must not exist or be empty)")
    parser.add_argument("--no-preview", action="store_true")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from reverie.engine.keyvalues import parse_key_values
    from reverie.engine.rollout import RolloutError, read_rollout
    from reverie.world.action_files import load_action_file
    from reverie.world.registry import load_model

    torch.set_num_threads(max(1, args.threads))
    try:
        context = read_rollout(args.context)
    except (RolloutError, FileNotFoundError, OSError) as exc:
        print(f"reverie rollout: {exc}", file=sys.stderr)
        return 2
    k = args.context_frames
    if not 1 <= k <= len(context):
        print(f"reverie rollout: --context-frames must be in 1..{len(context)}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, **parse_key_values(args.model_arg))
    except Exception as exc:
        print(f"reverie rollout: cannot load model '{args.model}': {exc}", file=sys.stderr)
        return 2
    space, theirs = model.spec.action_space, context.meta.action_space

    def translated(rows) -> list:  # the context's actions in the model's space, by button name
        return [theirs.translate(a, space) for a in theirs.coerce_many(rows)]

    try:
        actions = load_action_file(args.actions, space) if args.actions else translated(context.actions[k:])
    except ValueError as exc:
        hint = "" if args.actions else " (the context's actions are not the model's; give --actions)"
        print(f"reverie rollout: {exc}{hint}", file=sys.stderr)
        return 2
    try:
        real = translated(context.actions[:k])
    except ValueError as exc:
        print(f"reverie rollout: the context's actions are not the model's ({exc}); its {k} frames are committed "
              f"with the model's noop", file=sys.stderr)
        real = [space.noop] * k
    if args.steps is not None:
        actions = actions[:args.steps]
    if tuple(context.meta.frame_shape) != tuple(model.spec.frame_shape):
        print(f"reverie rollout: the context is {context.meta.frame_shape}, the model makes {model.spec.frame_shape}",
              file=sys.stderr)
        return 2
    summary = generate_rollout(model, args.model, context, real, actions, args)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {summary['steps']} steps ({summary['generated']} generated) to {summary['dir']}")
    return 0


def generate_rollout(model, name: str, context, real: list, actions: list, args) -> dict:
    """Commit the first `len(real)` context frames (with `real`, their actions in the model's space), then
    generate one frame per action (values of the model's action space); write everything as a rollout."""
    import numpy as np
    import torch

    from reverie.engine.rollout import RolloutMeta, RolloutWriter
    from reverie.engine.session import Session

    spec = model.spec
    c, k, space = spec.frames_per_chunk, len(real), spec.action_space
    session = Session(model, context.frames[0], policy=args.policy, budget_bytes=args.budget_bytes, seed=args.seed,
                      seed_action=real[0], pose_source=lambda frame_clock: None)
    if (k - 1) % c == 0:  # whole chunks of real frames: committed as they are
        session.observe(context.frames[1:k], real[1:k])
    else:                 # else each frame held for a chunk
        session.observe(np.repeat(context.frames[1:k], c, axis=0), [a for a in real[1:k] for _ in range(c)])
    meta_model = getattr(model, "meta", {}) or {}
    meta = RolloutMeta(source=f"model:{spec.name}", seed=args.seed, frame_shape=spec.frame_shape, map=context.meta.map,
                       fps=context.meta.fps, action_space=space,
                       config={"model": name, "config_hash": meta_model.get("config_hash"), "memory_policy": session.policy,
                               "budget_bytes": args.budget_bytes, "context": str(context.path),
                               "context_frames": k, "torch_threads": torch.get_num_threads()})
    actions = actions[:len(actions) - len(actions) % c]  # whole chunks only
    with RolloutWriter(args.out, meta) as writer:
        for t in range(k):  # the real history
            pose = context.poses[t]
            writer.append(context.frames[t], real[t], None if np.isnan(pose).any() else pose)
        for i in range(0, len(actions), c):
            chunk = session.generate(actions[i:i + c])
            for frame, a in zip(chunk.frames, actions[i:i + c]):
                writer.append(frame, a, None, extra={"kv_bytes": int(session.memory.kv_bytes())})
        summary = writer.close(preview=not args.no_preview)
    return {**summary, "generated": len(actions), "context_frames": k, "model": name}
