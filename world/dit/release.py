"""Bundle a trained checkpoint as the package's default model (`world/dit/weights/default.safetensors`).

    python -m world.dit.release runs/default-seed0/model.safetensors --steps 1.0
    python -m world.dit.release runs/default-seed0/snapshots/step*.safetensors --steps 1.0   # averaged

The weights are copied unchanged (fp16, as training saved them), or, given several checkpoints of one
run, averaged uniformly (checkpoint averaging, as in SWA: the late, low learning-rate checkpoints of a
small-batch run scatter around a better point). The metadata gains `sampler_steps` (the noise levels
`load_model("default")` samples with) and `released_from` (source files and their sha256); the JSON
beside the file records the same plus the training command history.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from world.checkpoint import load_state, read_metadata, save_state, sha256_file


def release(src: str | Path | list, dst: str | Path, steps: tuple[float, ...] | None = None) -> Path:
    """Write `src`'s weights (or the average of several checkpoints of one run, the last one's metadata)
    to `dst` with the default sampler steps; returns `dst`."""
    import torch

    from world.checkpoint import CheckpointError
    from world.contract import ModelSpec
    from world.dit.default import load_net

    sources = [Path(p) for p in (src if isinstance(src, (list, tuple)) else [src])]
    sources.sort(key=lambda p: read_metadata(p).get("step", 0))
    net, meta = load_net(sources[-1])  # validates the checkpoint end to end
    expected = {n: t.shape for n, t in net.state_dict().items()}
    state = load_state(sources[-1], expected, dtype=None)
    if len(sources) > 1:
        sums = {n: torch.zeros(t.shape, dtype=torch.float64) for n, t in state.items()}
        for p in sources:
            if read_metadata(p).get("config_hash") != meta.get("config_hash"):
                raise CheckpointError(f"{p} is not a checkpoint of the same model as {sources[-1]}")
            for n, t in load_state(p, expected, dtype=torch.float64).items():
                sums[n] += t
        state = {n: (v / len(sources)).to(state[n].dtype) for n, v in sums.items()}
        meta["averaged_steps"] = [read_metadata(p).get("step") for p in sources]
    if steps is not None:
        ModelSpec(name="check", frame_shape=(1, 1, 3), tokens_per_frame=1, latent_shape=(1, 1), layers=1,
                  heads=1, head_dim=1, steps=tuple(steps))  # same validation as the engine applies
        meta["sampler_steps"] = [float(s) for s in steps]
    meta.pop("checkpoint_path", None)
    meta["released_from"] = [{"file": str(p), "sha256": sha256_file(p)} for p in sources]
    return save_state(dst, state, meta)


def main(argv: list[str] | None = None) -> int:
    from world.dit.default import DEFAULT_CHECKPOINT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="+", help="model.safetensors written by `reverie train` (several: averaged)")
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--steps", type=float, nargs="+", default=None, help="default noise levels, highest first")
    args = parser.parse_args(argv)
    path = release(args.checkpoint, args.out, tuple(args.steps) if args.steps else None)
    meta = read_metadata(path)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, step {meta.get('step')}, averaged "
          f"{meta.get('averaged_steps', 'no')}, sampler steps {meta.get('sampler_steps', 'default')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
