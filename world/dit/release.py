"""Bundle a trained checkpoint as the package's default model (`world/dit/weights/default.safetensors`).

    python -m world.dit.release runs/default-seed0/model.safetensors --steps 1.0

The weights are copied unchanged (fp16, as training saved them); the metadata gains `sampler_steps` (the
noise levels `load_model("default")` samples with) and `released_from` (source file and its sha256), and
the JSON beside the file records the same plus the training command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from world.checkpoint import load_state, read_metadata, save_state, sha256_file


def release(src: str | Path, dst: str | Path, steps: tuple[float, ...] | None = None) -> Path:
    """Write `src`'s weights and metadata to `dst` with the default sampler steps; returns `dst`."""
    from world.contract import ModelSpec
    from world.dit.default import load_net

    net, meta = load_net(src)  # validates the checkpoint end to end
    state = load_state(src, {n: t.shape for n, t in net.state_dict().items()}, dtype=None)
    if steps is not None:
        ModelSpec(name="check", frame_shape=(1, 1, 3), tokens_per_frame=1, latent_shape=(1, 1), layers=1,
                  heads=1, head_dim=1, steps=tuple(steps))  # same validation as the engine applies
        meta["sampler_steps"] = [float(s) for s in steps]
    meta.pop("checkpoint_path", None)
    meta["released_from"] = {"file": str(src), "sha256": sha256_file(src)}
    return save_state(dst, state, meta)


def main(argv: list[str] | None = None) -> int:
    from world.dit.default import DEFAULT_CHECKPOINT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a model.safetensors written by `reverie train`")
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--steps", type=float, nargs="+", default=None, help="default noise levels, highest first")
    args = parser.parse_args(argv)
    path = release(args.checkpoint, args.out, tuple(args.steps) if args.steps else None)
    meta = read_metadata(path)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, step {meta.get('step')}, sampler steps "
          f"{meta.get('sampler_steps', 'default')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
