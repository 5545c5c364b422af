"""Bundle a trained checkpoint as the package's default model (`world/dit/weights/default.safetensors`).

    python -m world.dit.release runs/default-seed0/model.safetensors --steps 1.0
    python -m world.dit.release runs/default-seed0/snapshots/step*.safetensors --steps 1.0   # averaged
    python -m world.dit.release runs/a.safetensors runs/b.safetensors --weights 0.5 0.5 --steps 1.0  # a soup

The weights are copied unchanged (fp16, as training saved them), or, given several checkpoints, averaged:
uniformly over the late checkpoints of one run (checkpoint averaging, as in SWA: the late, low learning-rate
checkpoints of a small-batch run scatter around a better point), or with `--weights` over fine-tunes of one
ancestor (a model soup). Sources may differ only by heads that start as the identity (`GROWN_HEADS`): a
checkpoint without such a head counts as holding its zero initialisation, so a soup of a warp model and a
flow model halves the flow. The metadata is the richest source's (the one with the most such heads) plus
`sampler_steps` (the noise levels `load_model("default")` samples with) and `released_from` (each source's
file, sha256, step, weight and training command); the JSON beside the file records the same plus the
training command history.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from world.checkpoint import CheckpointError, load_state, read_metadata, save_state, sha256_file
from world.contract import ModelSpec


def release(src: str | Path | list, dst: str | Path, steps: tuple[float, ...] | None = None,
            weights: tuple[float, ...] | None = None, command: str = "") -> Path:
    """Write `src`'s weights, or the average of several checkpoints (uniform, or `weights`, which are
    normalised to sum to 1), to `dst` with the default sampler steps; returns `dst`. `command` (the release
    command line) is recorded as `release_command`."""
    import torch

    sources = [Path(p) for p in (src if isinstance(src, (list, tuple)) else [src])]
    if weights is None:
        weights = [1.0] * len(sources)
        order = sorted(range(len(sources)), key=lambda i: read_metadata(sources[i]).get("step", 0))
        sources = [sources[i] for i in order]
    if len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"give one non-negative weight per checkpoint ({len(sources)}), not all zero; got {list(weights)}")
    weights = [float(w) / sum(weights) for w in weights]
    ref, net, meta, absent = _reference(sources)
    expected = {n: t.shape for n, t in net.state_dict().items()}
    state = load_state(sources[ref], expected, dtype=None)  # the stored dtypes (fp16) are kept
    if len(sources) > 1:
        sums = {n: torch.zeros(shape, dtype=torch.float64) for n, shape in expected.items()}
        for p, w, missing in zip(sources, weights, absent):
            held = {n: s for n, s in expected.items() if n not in missing}
            for n, t in load_state(p, held, dtype=torch.float64).items():
                sums[n] += w * t  # a missing grown head adds its zero initialisation
        state = {n: v.to(state[n].dtype) for n, v in sums.items()}
        if len({read_metadata(p).get("command") for p in sources}) == 1:
            meta["averaged_steps"] = [read_metadata(p).get("step") for p in sources]
        else:
            meta.pop("averaged_steps", None)
    if steps is not None:
        ModelSpec(name="check", frame_shape=(1, 1, 3), tokens_per_frame=1, latent_shape=(1, 1), layers=1,
                  heads=1, head_dim=1, steps=tuple(steps))  # same validation as the engine applies
        meta["sampler_steps"] = [float(s) for s in steps]
    meta.pop("checkpoint_path", None)
    meta["release_command"] = command
    meta["released_from"] = [{"file": str(p), "sha256": sha256_file(p), "step": read_metadata(p).get("step"),
                              "weight": w, "command": read_metadata(p).get("command", "")}
                             for p, w in zip(sources, weights)]
    return save_state(dst, state, meta)


def _reference(sources: list[Path]):
    """The index, network and metadata of the source with the most grown heads (the last such), and per
    source the tensor names it lacks because it was saved without one of them; any other difference is an
    error."""
    from dataclasses import replace

    from world.dit.default import load_net
    from world.dit.train import GROWN_HEADS

    loaded = [load_net(p) for p in sources]  # validates each checkpoint end to end
    richness = [sum(bool(getattr(n.cfg, f)) for f in GROWN_HEADS) for n, _ in loaded]
    ref = max(range(len(sources)), key=lambda i: (richness[i], i))
    net, meta = loaded[ref]
    names = set(net.state_dict())
    absent = []
    for p, (other, _) in zip(sources, loaded):
        lacking = [f for f in GROWN_HEADS if getattr(net.cfg, f) and not getattr(other.cfg, f)]
        if replace(net.cfg, **{f: False for f in lacking}).hash() != other.cfg.hash():
            raise CheckpointError(f"{p} is not a checkpoint of the same model as {sources[ref]} "
                                  f"(they may differ only by the heads {sorted(GROWN_HEADS)})")
        absent.append(names - set(other.state_dict()))
    return ref, net, meta, absent


def main(argv: list[str] | None = None) -> int:
    from world.dit.default import DEFAULT_CHECKPOINT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="+", help="model.safetensors written by `reverie train` (several: averaged)")
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--steps", type=float, nargs="+", default=None, help="default noise levels, highest first")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one weight per checkpoint, in the order given (a soup; default: uniform)")
    raw = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(raw)
    path = release(args.checkpoint, args.out, tuple(args.steps) if args.steps else None,
                   tuple(args.weights) if args.weights else None,
                   command="python -m world.dit.release " + " ".join(shlex.quote(a) for a in raw))
    meta = read_metadata(path)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, step {meta.get('step')}, averaged "
          f"{meta.get('averaged_steps', 'no')}, sampler steps {meta.get('sampler_steps', 'default')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
