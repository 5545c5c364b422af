"""Bundle a trained checkpoint as the package's default model (`world/dit/weights/default.safetensors`).

    python -m reverie.world.dit.release runs/default-seed0/model.safetensors --steps 1.0
    python -m reverie.world.dit.release runs/default-seed0/snapshots/step*.safetensors --steps 1.0   # averaged
    python -m reverie.world.dit.release runs/a.safetensors runs/b.safetensors --weights 0.5 0.5 --steps 1.0  # a soup
    python -m reverie.world.dit.release world/dit/weights/default.safetensors --renderer runs/render/model.safetensors

The weights are copied unchanged (fp16, as training saved them), or, given several checkpoints, averaged:
uniformly over the late checkpoints of one run (checkpoint averaging, as in SWA: the late, low learning-rate
checkpoints of a small-batch run scatter around a better point), or with `--weights` over fine-tunes of one
ancestor (a model soup). Sources may differ only by heads that start as the identity (`GROWN_HEADS`): a
checkpoint without such a head counts as holding its zero initialisation, so a soup of a warp model and a
flow model halves the flow. The metadata is the richest source's (the one with the most such heads) plus
`sampler_steps` (the noise levels `load_model("default")` samples with) and `released_from` (each source's
file, sha256, step, weight and training command); the JSON beside the file records the same plus the
training command history.

`--renderer` bundles a renderer trained over that DiT (`reverie train --config render`; its tensors go in as
`renderer.*`, its config as `renderer`, and the sampler then defaults to the renderer's schedule); several
renderer checkpoints (snapshots of one run) are averaged uniformly.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from reverie.world.checkpoint import CheckpointError, load_state, read_metadata, save_state, sha256_file
from reverie.world.contract import ModelSpec


def release(src: str | Path | list, dst: str | Path, steps: tuple[float, ...] | None = None,
            weights: tuple[float, ...] | None = None, command: str = "",
            renderer: str | Path | list | None = None) -> Path:
    """Write `src`'s weights, or the average of several checkpoints (uniform, or `weights`, which are
    normalised to sum to 1), to `dst` with the default sampler steps; returns `dst`. `command` (the release
    command line) is recorded as `release_command`."""
    import torch

    from reverie.world.dit.default import RENDERER_PREFIX, load_checkpoint

    sources = [Path(p) for p in (src if isinstance(src, (list, tuple)) else [src])]
    full = [load_checkpoint(p) for p in sources]  # validates each end to end
    loaded = [(n, m) for n, _, m in full]
    if weights is None:
        weights = [1.0] * len(sources)
        order = sorted(range(len(sources)), key=lambda i: loaded[i][1].get("step", 0))
        sources, loaded = [sources[i] for i in order], [loaded[i] for i in order]
    if len(weights) != len(sources) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"give one non-negative weight per checkpoint ({len(sources)}), not all zero; got {list(weights)}")
    weights = [float(w) / sum(weights) for w in weights]
    metas = [m for _, m in loaded]
    ref = _reference(sources, [n.cfg for n, _ in loaded])
    net, meta = loaded[ref]
    expected = {n: t.shape for n, t in net.state_dict().items()}
    bundled = full[ref][1]  # a renderer already in the source is dropped (or replaced by --renderer)
    stored = dict(expected, **({} if bundled is None else
                               {RENDERER_PREFIX + n: t.shape for n, t in bundled.state_dict().items()}))
    state = load_state(sources[ref], stored, dtype=None)  # the stored dtypes (fp16) are kept
    state = {n: t for n, t in state.items() if n in expected}
    if len(sources) > 1:
        sums = {n: torch.zeros(shape, dtype=torch.float64) for n, shape in expected.items()}
        for (other, _), w in zip(loaded, weights):
            for n, t in other.state_dict().items():
                sums[n] += w * t.double()  # a missing grown head adds its zero initialisation
        state = {n: v.to(state[n].dtype) for n, v in sums.items()}
        if len({m.get("command") for m in metas}) == 1:
            meta["averaged_steps"] = [m.get("step") for m in metas]
        else:
            meta.pop("averaged_steps", None)
    if steps is not None:
        ModelSpec(name="check", frame_shape=(1, 1, 3), tokens_per_frame=1, latent_shape=(1, 1), layers=1,
                  heads=1, head_dim=1, steps=tuple(steps))  # same validation as the engine applies
        meta["sampler_steps"] = [float(s) for s in steps]
    meta.pop("checkpoint_path", None)
    meta.pop("renderer", None)
    meta.pop("renderer_from", None)
    if renderer is not None:
        state, meta = _with_renderer(state, meta, renderer, net.cfg.hash())
        if steps is None and "sampler_steps" in meta:  # the DiT's own steps; the renderer's schedule is default
            meta["dit_sampler_steps"] = meta.pop("sampler_steps")
    meta["release_command"] = command
    meta["released_from"] = [{"file": str(p), "sha256": sha256_file(p), "step": m.get("step"), "weight": w,
                              "command": m.get("command", "")} for p, m, w in zip(sources, metas, weights)]
    return save_state(dst, state, meta)


def _with_renderer(state: dict, meta: dict, renderer, dit_hash: str) -> tuple[dict, dict]:
    """`state` and `meta` plus the (averaged) renderer checkpoint(s) `renderer`, checked to be trained over
    a DiT of the same architecture."""
    from reverie.world.dit.default import RENDERER_PREFIX
    from reverie.world.dit.renderer import Renderer, RendererConfig

    paths = [Path(p) for p in (renderer if isinstance(renderer, (list, tuple)) else [renderer])]
    metas = [read_metadata(p) for p in paths]
    for p, m in zip(paths, metas):
        if "renderer" not in m:
            raise CheckpointError(f"{p} is not a renderer checkpoint (no renderer config in its metadata)")
        if m.get("dit_config_hash") != dit_hash:
            raise CheckpointError(f"{p} was trained over a DiT of config {m.get('dit_config_hash')}, not {dit_hash}")
        if m["renderer"] != metas[0]["renderer"]:
            raise CheckpointError(f"{p} holds another renderer architecture than {paths[0]}")
    expected = {n: t.shape for n, t in Renderer(RendererConfig.from_dict(metas[0]["renderer"])).state_dict().items()}
    loaded = [load_state(p, expected, dtype=None) for p in paths]
    averaged = {n: (sum(s[n].double() for s in loaded) / len(loaded)).to(loaded[0][n].dtype) for n in expected}
    state = dict(state, **{RENDERER_PREFIX + n: t for n, t in averaged.items()})
    meta = dict(meta, renderer=metas[0]["renderer"],
                renderer_from=[{"file": str(p), "sha256": sha256_file(p), "step": m.get("step"),
                                "command": m.get("command", "")} for p, m in zip(paths, metas)])
    return state, meta


def _reference(sources: list[Path], configs: list) -> int:
    """Index of the source whose config has the most grown heads (the last such); every other config must
    be it without some of them (`world.dit.config.heads_to_grow`), else a `CheckpointError`."""
    from reverie.world.dit.config import GROWN_HEADS, heads_to_grow

    richness = [sum(bool(getattr(c, f)) for f in GROWN_HEADS) for c in configs]
    ref = max(range(len(sources)), key=lambda i: (richness[i], i))
    for p, cfg in zip(sources, configs):
        if heads_to_grow(configs[ref], cfg) is None:
            raise CheckpointError(f"{p} is not a checkpoint of the same model as {sources[ref]} "
                                  f"(they may differ only by the heads {sorted(GROWN_HEADS)})")
    return ref


def main(argv: list[str] | None = None) -> int:
    from reverie.world.dit.default import DEFAULT_CHECKPOINT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="+", help="model.safetensors written by `reverie train` (several: averaged)")
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--steps", type=float, nargs="+", default=None, help="default noise levels, highest first")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one weight per checkpoint, in the order given (a soup; default: uniform)")
    parser.add_argument("--renderer", nargs="+", default=None,
                        help="renderer checkpoint(s) trained over this DiT to bundle (several: averaged)")
    raw = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(raw)
    path = release(args.checkpoint, args.out, tuple(args.steps) if args.steps else None,
                   tuple(args.weights) if args.weights else None,
                   command="python -m reverie.world.dit.release " + " ".join(shlex.quote(a) for a in raw),
                   renderer=args.renderer)
    meta = read_metadata(path)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, step {meta.get('step')}, averaged "
          f"{meta.get('averaged_steps', 'no')}, sampler steps {meta.get('sampler_steps', 'default')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
