"""Plug a third-party world model into reverie through the `reverie.world_models` entry point.

A model package declares, in its pyproject.toml (see examples/plugin/pyproject.toml):

    [project.entry-points."reverie.world_models"]
    example-tiny = "reverie_example_plugin.model:build"

Install it next to reverie (offline is fine: it has no dependencies of its own):

    pip install --no-deps --no-build-isolation ./examples/plugin

and every command finds it by name: `reverie play --model example-tiny`, `reverie bench model --model
example-tiny --json`, `reverie rollout --model example-tiny --context ROLLOUT --out DIR`.

This script checks that the model is registered, then plays it the way the engine does: an
`engine.session.Session` (from a grey seed frame, on a `memory.MemoryManager` with the policy's default
budget) stepped with `forward`, and prints what it made. Run: python examples/plug_in_model.py [--name example-tiny] [--frames 16]
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="example-tiny", help="entry-point name of the model")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--policy", default=None, help="memory policy (default: dual; none for a model without a cache)")
    args = parser.parse_args(argv)

    import numpy as np

    from reverie.engine.session import Session
    from reverie.world.registry import available, load_model

    if args.name not in available():
        print(f"'{args.name}' is not installed; run: pip install --no-deps --no-build-isolation ./examples/plugin "
              "(or ./examples/plugin-matrix, ./examples/plugin-diamond)",
              file=sys.stderr)
        return 1
    model = load_model(args.name)
    spec = model.spec
    from reverie.memory.footprint import default_policy

    session = Session(model, np.full(spec.frame_shape, 128, np.uint8), policy=args.policy or default_policy(spec))
    memory = session.memory
    space = spec.action_space
    forward = space.coerce("forward") if "forward" in space.buttons else space.noop
    t0 = time.perf_counter()
    video = np.stack([session.step(forward).frame for _ in range(args.frames)])
    elapsed = time.perf_counter() - t0
    print(f"model {spec.name}: {len(video)} frames {tuple(video.shape[1:])} uint8 in {elapsed:.2f} s "
          f"({len(video) / elapsed:.1f} fps), memory {memory.stats().get('policy')} holding "
          f"{memory.kv_bytes()} bytes of K/V for {memory.frames_committed} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
