"""A training run's bookkeeping, shared by the DiT's and the renderer's trainers: where a run writes
(`RunPaths`), its checkpoints (`save_run`: the model in fp16 for use, the full state for `resume_run`),
snapshots for averaging at release, the learning-rate schedule, the loss plot and the device name.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reverie.world.checkpoint import save_state


def lr_at(step: int, cfg) -> float:
    """Learning rate at `step` of a run with `cfg.lr`, `cfg.warmup` and `cfg.steps`: linear warm-up, then a
    cosine down to 5 % of it."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def set_lr(opt: torch.optim.Optimizer, step: int, cfg) -> float:
    """Set every parameter group's learning rate to `lr_at(step, cfg)`; returns it."""
    lr = lr_at(step, cfg)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params, grad_clip: float) -> None:
    """Backward `loss`, clip the gradients of `params` to norm `grad_clip`, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()


@dataclass(frozen=True)
class RunPaths:
    """Where a training run keeps its files, all under `out`."""

    out: Path

    model = property(lambda self: self.out / "model.safetensors")  # the model, fp16, for use
    state = property(lambda self: self.out / "train_state.safetensors")  # everything `resume_run` needs
    curve = property(lambda self: self.out / "loss.csv")
    snapshots = property(lambda self: self.out / "snapshots")


def keep_snapshot(paths: RunPaths, step: int, keep: int) -> None:
    """Copy the checkpoint just written to `snapshots/step{step}.safetensors`, keeping the latest `keep`
    (the late checkpoints that `world.dit.release` averages)."""
    import shutil

    paths.snapshots.mkdir(exist_ok=True)
    tmp = paths.snapshots / f"step{step}.safetensors.tmp"
    shutil.copyfile(paths.model, tmp)
    tmp.replace(paths.snapshots / f"step{step}.safetensors")
    old = sorted(paths.snapshots.glob("step*.safetensors"), key=lambda p: int(p.stem[4:]))
    for p in old[:-keep]:
        p.unlink()


def _adam_state(prefix: str, net: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The AdamW moments of `opt` for `net`'s parameters, named `{prefix}adam.exp_avg.{param}` and so on."""
    state = {}
    names = {id(p): n for n, p in net.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            s = opt.state.get(p)
            if s:
                state[f"{prefix}adam.exp_avg.{names[id(p)]}"] = s["exp_avg"]
                state[f"{prefix}adam.exp_avg_sq.{names[id(p)]}"] = s["exp_avg_sq"]
    return state


def _adam_step(opt: torch.optim.Optimizer) -> float:
    return next((float(s["step"]) for s in opt.state.values() if "step" in s), 0.0)


def save_run(paths: RunPaths, net: torch.nn.Module, opt: torch.optim.Optimizer, step: int, np_rng: np.random.Generator,
          gen: torch.Generator, meta: dict, aux: dict | None = None) -> None:
    """Model (fp16, for use) and full training state (fp32 weights + AdamW moments + RNG, for resume).

    `aux` maps a name to a `(module, optimizer)` pair trained beside the model (the adversarial critic):
    kept in the training state only, under `aux.NAME.`, so a run resumes with it.
    """
    model_meta = dict(meta, step=step)
    save_state(paths.model, net.state_dict(), model_meta, dtype=torch.float16)
    state = {f"model.{n}": p for n, p in net.state_dict().items()}
    state.update(_adam_state("", net, opt))
    aux_steps = {}
    for name, (module, aux_opt) in (aux or {}).items():
        state.update({f"aux.{name}.model.{n}": p for n, p in module.state_dict().items()})
        state.update(_adam_state(f"aux.{name}.", module, aux_opt))
        aux_steps[name] = _adam_step(aux_opt)
    state["rng.torch"] = gen.get_state()
    save_state(paths.state, state, dict(meta, step=step, adam_step=_adam_step(opt), aux_adam_step=aux_steps,
                                        numpy_rng=np_rng.bit_generator.state))


def checkpoint_if_due(paths: "RunPaths", net: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                      np_rng: np.random.Generator, gen: torch.Generator, meta: dict, cfg, keep_snapshots: int,
                      aux: dict | None = None) -> bool:
    """After optimizer step `step` (0-based): every `cfg.checkpoint_every` steps and at the last one, save the
    run (`save_run`) and, with `keep_snapshots`, a snapshot; returns whether it saved."""
    if (step + 1) % cfg.checkpoint_every and step + 1 != cfg.steps:
        return False
    save_run(paths, net, opt, step + 1, np_rng, gen, meta, aux)
    if keep_snapshots:
        keep_snapshot(paths, step + 1, keep_snapshots)
    return True


def _load_adam(prefix: str, state: dict, net: torch.nn.Module, opt: torch.optim.Optimizer, step: float) -> None:
    for name, p in net.named_parameters():
        if f"{prefix}adam.exp_avg.{name}" in state:
            opt.state[p] = {"step": torch.tensor(step), "exp_avg": state[f"{prefix}adam.exp_avg.{name}"].to(p.device),
                            "exp_avg_sq": state[f"{prefix}adam.exp_avg_sq.{name}"].to(p.device)}


def resume_run(paths: RunPaths, net: torch.nn.Module, opt: torch.optim.Optimizer, np_rng: np.random.Generator,
            gen: torch.Generator, aux: dict | None = None) -> int:
    """Restore what `save_run` wrote (the `aux` modules too, which must all be in the state); returns the
    step to continue from."""
    from reverie.world.checkpoint import CheckpointError, load_state, read_metadata

    meta = read_metadata(paths.state)
    from safetensors.torch import load_file

    state = load_file(str(paths.state))
    expected = {f"model.{n}": p.shape for n, p in net.state_dict().items()}
    for name, (module, _) in (aux or {}).items():
        expected.update({f"aux.{name}.model.{n}": p.shape for n, p in module.state_dict().items()})
    weights = [k for k in state if k.startswith("model.") or (k.startswith("aux.") and ".model." in k)]
    others = {k: v.shape for k, v in state.items() if k not in weights}  # moments, RNG: checked as they load
    model_state = load_state(paths.state, {**expected, **others})
    net.load_state_dict({k[len("model."):]: v for k, v in model_state.items() if k.startswith("model.")})
    _load_adam("", state, net, opt, meta["adam_step"])
    for name, (module, aux_opt) in (aux or {}).items():
        prefix = f"aux.{name}."
        module.load_state_dict({k[len(prefix) + len("model."):]: v for k, v in model_state.items()
                                if k.startswith(prefix + "model.")})
        steps = meta.get("aux_adam_step", {})
        if name not in steps:
            raise CheckpointError(f"{paths.state} holds no '{name}' state to resume")
        _load_adam(prefix, state, module, aux_opt, steps[name])
    gen.set_state(state["rng.torch"])
    np_rng.bit_generator.state = meta["numpy_rng"]
    return int(meta["step"])


def device_name(device: torch.device) -> str:
    """What a run trained on, for its checkpoint's metadata: "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def plot_curve(csv_path: Path, png_path: Path) -> bool:
    """Loss curve PNG (skipped, returning False, when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        return False
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("x0", "pose"):
        vals = [float(r[key]) for r in rows]
        ax.plot(steps, vals, label=key, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True
