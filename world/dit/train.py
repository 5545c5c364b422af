"""Training the default model: diffusion forcing with a clean commit copy of every frame.

Each training sequence is `[R revisit frames | W clean frames | W noisy frames]`:

* the clean copies play the commit pass: frame i attends to the revisit frames and clean frames <= i,
  at noise level 0 (or a small augmentation level, so the model learns to tolerate imperfect history);
* the noisy copies play a denoising step: frame i, at its own independently drawn noise level, attends to
  the revisit frames, clean frames < i and itself, which is exactly what `denoise` sees through memory.

The loss is the x0 error of every noisy copy (flow matching, `x_t = (1 - t) x0 + t noise`, x0
prediction) plus the pose-delta error of the clean copies; with `TrainConfig.adv_weight`, also an
adversarial term from a critic trained beside the model (`world.dit.critic`). Everything random is drawn from generators
seeded by the run's seed, so a run is reproducible; `resume` continues from the last checkpoint.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reverie.world.dit.config import GROWN_HEADS, DiTConfig, TrainConfig, heads_to_grow, model_config
from reverie.world.dit.critic import FrameCritic, adaptive_weight, critic_loss, model_adv_loss
from reverie.world.dit.data import Episode, WindowSampler
from reverie.world.dit.degrade import degrade_windows
from reverie.world.dit.patches import patchify, to_latents, to_pixels
from reverie.world.dit.network import DiTNet
from reverie.world.dit.runs import (RunPaths, checkpoint_if_due, device_name, optimizer_step, plot_curve, resume_run,
                            save_run, set_lr)

SAMPLER_LEVELS = torch.tensor([1.0, 0.75, 0.5, 0.25])


def block_causal_mask(window: int, n_extra: int = 0, extra_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Frame-level attention mask for `[extra | clean | noisy]` sequences.

    Args:
        window: W frames (each present as a clean and a noisy copy).
        n_extra: R revisit frames placed first.
        extra_valid: optional bool `[B, R]`; invalid revisit slots are hidden from everyone.
    Returns:
        bool `[R + 2W, R + 2W]` (or `[B, ...]` with `extra_valid`); `[i, j]` true if i may attend to j.
    """
    r, w = n_extra, window
    n = r + 2 * w
    m = torch.zeros(n, n, dtype=torch.bool)
    m[:r, :r] = torch.ones(r, r, dtype=torch.bool).tril()
    m[r:, :r] = True
    m[r:r + w, r:r + w] = torch.ones(w, w, dtype=torch.bool).tril()
    m[r + w:, r:r + w] = torch.ones(w, w, dtype=torch.bool).tril(-1)
    m[r + w:, r + w:] = torch.eye(w, dtype=torch.bool)
    if extra_valid is None:
        return m
    m = m.expand(extra_valid.shape[0], n, n).clone()
    hidden = torch.zeros(extra_valid.shape[0], n, dtype=torch.bool)
    hidden[:, :r] = ~extra_valid
    m &= ~hidden[:, None, :]
    idx = torch.arange(r)
    m[:, idx, idx] = True  # every frame sees at least itself
    return m


def sample_levels(gen: torch.Generator, shape: tuple[int, ...], top_prob: float = 0.0) -> torch.Tensor:
    """Noise levels for the noisy copies: `top_prob` of them at 1 (pure noise: the first, and with a
    one-step sampler the only, step), the rest uniform in (0, 1], half of those snapped to the sampler's levels."""
    t = torch.rand(shape, generator=gen).clamp_min(0.02)
    snap = torch.rand(shape, generator=gen) < 0.5
    pick = SAMPLER_LEVELS[torch.randint(0, len(SAMPLER_LEVELS), shape, generator=gen)]
    top = torch.rand(shape, generator=gen) < top_prob
    return torch.where(top, torch.ones(shape), torch.where(snap, pick, t))


def make_batch(sample: dict[str, np.ndarray], cfg: TrainConfig, model_cfg: DiTConfig, gen: torch.Generator,
               device: str | torch.device | None = None) -> dict:
    """Turn sampled windows into network inputs and targets (see the module docstring), on `device` (default
    the CPU).

    Every random draw comes from `gen` on the CPU, so a run sees the same noise wherever it trains; the
    windows go to `device` as uint8 and the arithmetic runs there (on a GPU the CPU's share of a step is
    the draws alone: built on one CPU thread, a batch of 32 took 296 ms, its noise draw about a fifth of that)."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    r, w = cfg.revisit_frames, cfg.window
    frames = _to(sample["frames"], dev)
    x0 = patchify(frames, model_cfg.patch)  # [B, R+W, T, P]
    seen, prev_seen = conditioning_frames(frames, x0, sample, cfg, model_cfg, gen)
    b = x0.shape[0]
    t_ctx = torch.rand(b, r + w, generator=gen) * cfg.context_aug_max
    t_ctx = torch.where(torch.rand(b, r + w, generator=gen) < cfg.context_aug_prob, t_ctx, torch.zeros_like(t_ctx))
    t_noisy = sample_levels(gen, (b, w), cfg.top_level_prob)
    t = torch.cat((t_ctx, t_noisy), 1).to(dev)
    target = torch.cat((seen, x0[:, r:]), 1)
    noise = torch.randn(target.shape, generator=gen).to(dev)
    tt = t[..., None, None]
    x_in = (1.0 - tt) * target + tt * noise
    actions = _to(sample["actions"], dev)
    pos = _to(sample["pos"], dev)
    scale = torch.tensor(model_cfg.pose_scale, device=dev)
    prev = None
    if model_cfg.prev_frame:  # each copy sees its frame's real predecessor (zeros where there is none)
        prev = prev_seen
        keep = torch.from_numpy(sample["has_prev"])
        if cfg.prev_drop_prob > 0.0:
            keep = keep & (torch.rand(keep.shape, generator=gen) >= cfg.prev_drop_prob)
        prev = augment_prev(prev, cfg, gen) * keep.to(dev)[..., None, None]
        prev = torch.cat((prev, prev[:, r:]), 1)
    return {"prev": prev,
        "x": x_in, "t": t, "actions": torch.cat((actions, actions[:, r:]), 1),
        "pos": torch.cat((pos, pos[:, r:]), 1),
        "revisit_valid": _to(sample["revisit_valid"], dev),
        "x0": x0[:, r:], "pose": _to(sample["deltas"][:, r:], dev) / scale,
    }


def _to(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def conditioning_frames(frames: torch.Tensor, latents: torch.Tensor, sample: dict[str, np.ndarray], cfg: TrainConfig,
                        model_cfg: DiTConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The latents a window conditions on, given its uint8 `frames` and their `latents` (`patchify`d) on the
    batch's device: its frames' clean copies and (`prev_frame` models) their previous-frame inputs, both
    degraded as the model's own frames are (`TrainConfig.degrade_prob`; one draw per window, shared by
    both). The noisy copies keep the real frames: they are the targets."""
    prev = _to(sample["prev_frames"], frames.device) if model_cfg.prev_frame else None
    if cfg.degrade_prob <= 0.0:
        return latents, None if prev is None else patchify(prev, model_cfg.patch)
    n = frames.shape[1]
    both = frames if prev is None else torch.cat((frames, prev), 1)
    images = degrade_windows(both.float() / 127.5 - 1.0, cfg.degrade_prob, cfg.degrade_blur_max,
                             cfg.degrade_colour_max, gen)
    degraded = to_latents(images, model_cfg.patch)
    return degraded[:, :n], (None if prev is None else degraded[:, n:])


def augment_prev(prev: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Noise-augment previous-frame latents `[B, n, T, P]`: with probability `prev_aug_prob` per frame,
    `(1 - s) prev + s noise` with `s ~ U(0, prev_aug_max)` (the model must correct what it is fed). The
    draws come from `gen` on the CPU whatever `prev`'s device."""
    if cfg.prev_aug_prob <= 0.0 or cfg.prev_aug_max <= 0.0:
        return prev
    b, n = prev.shape[:2]
    s = torch.rand(b, n, generator=gen) * cfg.prev_aug_max
    s = torch.where(torch.rand(b, n, generator=gen) < cfg.prev_aug_prob, s, torch.zeros_like(s))[..., None, None]
    s = s.to(prev.device)
    return (1.0 - s) * prev + s * torch.randn(prev.shape, generator=gen).to(prev.device)


def prev_present(prev: torch.Tensor) -> torch.Tensor:
    """bool `[B, n]`: which frames of previous-frame latents `[B, n, T, P]` have one (all zeros = dropped or
    none, as `make_batch` writes them)."""
    return prev.abs().flatten(-2).amax(-1) > 0


def rollout_prev(net: DiTNet, batch: dict, cfg: TrainConfig, gen: torch.Generator) -> dict:
    """Self-forcing of the previous-frame input (see `TrainConfig.prev_rollout_passes`).

    Each pass predicts every window frame in one step from pure noise (the sampler's first level), the way
    play generates it, with the previous-frame inputs of the pass before; frame j >= 1 of the window then
    takes the prediction of frame j - 1 as its previous frame, in both its clean (commit) and noisy copy.
    Revisit frames and window frame 0 keep their real predecessors, and a dropped previous frame stays
    dropped. With `prev_rollout_context`, the clean (commit) copies of frames j >= 1 become the pass's
    predictions too, at noise level 0, so the history the model attends to is its own as well.
    """
    passes, prev = cfg.prev_rollout_passes, batch.get("prev")
    if passes <= 0 or prev is None or cfg.prev_rollout_prob <= 0.0:
        return batch
    r, w = cfg.revisit_frames, cfg.window
    b = prev.shape[0]
    x, t = batch["x"].clone(), batch["t"].clone()
    x[:, r + w:] = torch.randn(x[:, r + w:].shape, generator=gen).to(x.device)
    t[:, r + w:] = 1.0
    use = (torch.rand(b, generator=gen) < cfg.prev_rollout_prob).to(x.device)[:, None, None, None]
    real = prev
    kept = prev_present(real).to(real.dtype)[..., None, None]  # [B, n, 1, 1]
    with torch.no_grad():
        for _ in range(passes):
            out, _ = net.forward_doubled(x, t, batch["actions"], batch["pos"], r, batch["revisit_valid"], prev=prev)
            pred = out[:, r + w:]
            own = real.clone()
            own[:, r + 1:r + w] = pred[:, :-1] * kept[:, r + 1:r + w]
            own[:, r + w + 1:] = pred[:, :-1] * kept[:, r + w + 1:]
            prev = torch.where(use, own, real)
            if cfg.prev_rollout_context:
                x[:, r + 1:r + w] = torch.where(use, pred[:, 1:], x[:, r + 1:r + w])
                t[:, r + 1:r + w] = torch.where(use[:, :, 0, 0], 0.0, t[:, r + 1:r + w])
    if not cfg.prev_rollout_context:
        return dict(batch, prev=prev)
    xs, ts = batch["x"].clone(), batch["t"].clone()
    xs[:, r:r + w], ts[:, r:r + w] = x[:, r:r + w], t[:, r:r + w]
    return dict(batch, prev=prev, x=xs, t=ts)


PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """The forward passes' autocast context: bf16 matmuls and attention under `precision="bf16"` (weights,
    gradients and optimizer state stay fp32), nothing under "fp32"."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got '{precision}'")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def losses(net: DiTNet, batch: dict, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    r, w = cfg.revisit_frames, cfg.window
    out, pose, moved = net.forward_doubled(batch["x"], batch["t"], batch["actions"], batch["pos"], r,
                                           batch["revisit_valid"], prev=batch.get("prev"), with_prev=True)
    out = out.float()
    loss_x0 = F.mse_loss(out[:, r + w:], batch["x0"])
    total = loss_x0
    result = {"x0": loss_x0, "pred": out[:, r + w:]}
    if cfg.warp_weight > 0.0 and net.warp_out is not None:
        loss_warp = warp_alignment_loss(moved[:, r + w:].float(), batch["prev"][:, r + w:], batch["x0"])
        total = total + cfg.warp_weight * loss_warp
        result["warp"] = loss_warp
    if pose is not None:
        loss_pose = F.mse_loss(pose[:, r:r + w].float(), batch["pose"])
        total = total + cfg.pose_weight * loss_pose
        result["pose"] = loss_pose
    result["loss"] = total
    return result


def frame_images(latents: torch.Tensor, model_cfg: DiTConfig) -> torch.Tensor:
    """Patch latents `[B, n, T, P]` -> the critic's frames `[B*n, 3, H, W]`, clamped to [-1, 1] as play
    shows them (unclamped, the model can please the critic with values no screen shows)."""
    pixels = to_pixels(latents.flatten(0, 1), model_cfg.patch, model_cfg.frame_h, model_cfg.frame_w)
    return pixels.clamp(-1.0, 1.0).permute(0, 3, 1, 2)


def judged(latents: torch.Tensor, batch: dict, cfg: TrainConfig, model_cfg: DiTConfig) -> torch.Tensor:
    """The critic's frames among the noisy copies' latents `[B, W, T, P]`: those at noise level >=
    `cfg.adv_level_min` (1.0: only the pure-noise copies, the frames one-step play shows)."""
    levels = batch["t"][:, cfg.revisit_frames + cfg.window:]
    return frame_images(latents[levels >= cfg.adv_level_min][None], model_cfg)


def add_adversarial(parts: dict, net: DiTNet, critic: FrameCritic, batch: dict, cfg: TrainConfig,
                    model_cfg: DiTConfig, step: int) -> dict:
    """Add the critic's verdict on the noisy copies' predictions (`judged`) to the model's loss: `adv` (the
    hinge model loss) times `adv_w` (`adaptive_weight` of `cfg.adv_weight` at the output layer; 0 during
    the first `cfg.adv_start` steps, while the critic learns what the model's frames look like, and for a
    batch with no judged frame)."""
    fake = judged(parts["pred"].float(), batch, cfg, model_cfg)
    weight = torch.zeros((), device=fake.device)
    if not len(fake):
        return dict(parts, adv=weight, adv_w=weight)
    critic.requires_grad_(False)  # the model's step does not train the critic
    adv = model_adv_loss(critic, fake)
    critic.requires_grad_(True)
    if step >= cfg.adv_start:
        weight = adaptive_weight(parts["x0"], adv, net.out.weight, cfg.adv_weight)
    return dict(parts, adv=adv, adv_w=weight, loss=parts["loss"] + weight * adv)


def critic_step(critic: FrameCritic, opt: torch.optim.Optimizer, parts: dict, batch: dict, cfg: TrainConfig,
                model_cfg: DiTConfig) -> torch.Tensor:
    """One hinge update of the critic: the batch's real target frames against the model's predictions of
    them (detached), the `judged` copies only; returns its loss (0, no update, when none is judged)."""
    real = judged(batch["x0"].float(), batch, cfg, model_cfg)
    if not len(real):
        return torch.zeros((), device=real.device)
    fake = judged(parts["pred"].detach().float(), batch, cfg, model_cfg)
    loss = critic_loss(critic, real, fake)
    optimizer_step(opt, loss, critic.parameters(), cfg.grad_clip)
    return loss.detach()


def make_critic(cfg: TrainConfig, net: DiTNet, device: torch.device):
    """The critic and its optimizer for a run with `cfg.adv_weight > 0` (else `(None, None)`)."""
    if cfg.adv_weight <= 0.0:
        return None, None
    if not net.out.weight.requires_grad:
        raise ValueError("adv_weight needs the output layer 'out' trained (add it to train_only)")
    critic = FrameCritic(cfg.critic_width).to(device)
    return critic, torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr, betas=(0.5, 0.99))


def warp_alignment_loss(moved: torch.Tensor, prev: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the warped previous frame alone against the target frame, over the frames
    that have a previous frame (`[B, n, T, P]` each). It trains the warp head to carry the camera motion
    directly (the x0 loss alone left it at the identity: the correction absorbed the motion first)."""
    has = prev_present(prev.detach()).to(moved.dtype)
    err = (moved - target).pow(2).mean(dim=(-2, -1))
    return (err * has).sum() / has.sum().clamp(min=1.0)


def trainable_parameters(net: DiTNet, only: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """The parameters of `net`'s top-level modules named in `only` (all of them when empty); the others
    are frozen (`requires_grad=False`, so backward skips them)."""
    modules = {name for name, _ in net.named_children()} | {name for name, _ in net.named_parameters(recurse=False)}
    unknown = set(only) - modules
    if unknown:
        raise ValueError(f"train_only names {sorted(unknown)} are not modules of this network "
                         f"(choose from {sorted(modules)})")
    keep = []
    for name, p in net.named_parameters():
        p.requires_grad_(not only or name.split(".")[0] in only)
        if p.requires_grad:
            keep.append(p)
    return keep


def _warm_start(net: DiTNet, model_cfg: DiTConfig, path: str | Path) -> dict:
    """Load `path`'s weights into `net`; returns where they came from.

    The checkpoint must hold the same architecture, or the same one without heads that start as the
    identity (`GROWN_HEADS`: a `prev_frame` model warm-starts a `prev_warp` one, its warp head left at zero;
    a `prev_warp` model a `prev_flow` one, its flow head left at zero).
    """
    from reverie.world.checkpoint import CheckpointError, sha256_file
    from reverie.world.dit.default import load_net

    src, meta = load_net(path)  # validates the checkpoint's config, names and shapes
    grown = heads_to_grow(model_cfg, src.cfg)
    if grown is None:
        raise CheckpointError(f"{path} holds a model of config {src.cfg.hash()}, this run trains "
                              f"{model_cfg.hash()}; warm-start only from the same architecture "
                              f"(or one without {sorted(GROWN_HEADS)})")
    missing, unexpected = net.load_state_dict(src.state_dict(), strict=False)
    grown_modules = {GROWN_HEADS[f] for f in grown}
    new = {n for n in missing if n.split(".")[0] not in grown_modules}
    if new or unexpected:
        raise CheckpointError(f"{path}: weights do not match this network (missing {sorted(new)}, "
                              f"unexpected {sorted(unexpected)})")
    return {"file": str(path), "sha256": sha256_file(path), "step": meta.get("step"),
            "command": meta.get("command", ""), "config_hash": src.cfg.hash(), "grown": grown}


def train(episodes: list[Episode], cfg: TrainConfig, out: str | Path, *, seed: int = 0, resume: bool = False,
          extra_meta: dict | None = None, progress: bool = True, keep_snapshots: int = 0,
          init: str | Path | None = None, device: str | torch.device = "cpu", precision: str = "fp32",
          time_budget_s: float | None = None) -> Path:
    """Train a `DiTNet` on `episodes`; writes `model.safetensors` (+ .json), `loss.csv`, `loss.png`, and
    with `keep_snapshots=N` the latest N checkpoints under `snapshots/`. `init` warm-starts from a model
    checkpoint's weights (same architecture; fresh optimizer and schedule): a fine-tuning run.

    The network trains on `device` ("cpu", "cuda", "cuda:1", ...) under `precision` ("fp32", or "bf16"
    autocast with fp32 weights). Windows and every random draw come from CPU generators either way, so a run
    sees the same data and noise wherever it trains; its weights match across devices only up to float
    rounding. Checkpoints are written from CPU copies and load anywhere.

    `time_budget_s` fits the run to a wall-clock budget (a lent GPU for a few minutes): after
    `CALIBRATION_STEPS` steps it shortens `cfg.steps` to what the measured pace finishes in time
    (`steps_within`), so the learning-rate schedule still ends at its floor; the steps chosen go into the
    checkpoint's "train" metadata, and `--steps N` reproduces the run without the budget.

    Returns the path of the model checkpoint.
    """
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    paths = RunPaths(Path(out))
    paths.out.mkdir(parents=True, exist_ok=True)
    model_cfg = model_config(cfg.model)
    torch.manual_seed(seed)
    net = DiTNet(model_cfg)
    init_meta = {}
    if init is not None:
        init_meta = {"init": _warm_start(net, model_cfg, init)}
    device = torch.device(device)
    autocast(device, precision)  # refuses an unknown precision before anything is written
    net.to(device)
    opt = torch.optim.AdamW(trainable_parameters(net, cfg.train_only), lr=cfg.lr, betas=(0.9, 0.99),
                            weight_decay=cfg.weight_decay)
    np_rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    critic, critic_opt = make_critic(cfg, net, device)
    aux = None if critic is None else {"critic": (critic, critic_opt)}
    sampler = WindowSampler(episodes, cfg)
    meta = {"config": model_cfg.to_dict(), "config_hash": model_cfg.hash(), "train": cfg.to_dict(), "seed": seed,
            "frames": int(sum(len(e) for e in episodes)), "episodes": len(episodes),
            "longest_episode": int(max((len(e) for e in episodes), default=0)), "precision": precision,
            "device": device_name(device), **init_meta, **(extra_meta or {})}
    start = 0
    if resume and paths.state.is_file():
        start = resume_run(paths, net, opt, np_rng, gen, aux)
        from reverie.world.checkpoint import read_metadata

        previous = read_metadata(paths.state)
        # every command that shaped this run, with the step it stopped at (a resume may change the schedule)
        history = list(previous.get("history", []))
        history.append({"command": previous.get("command", ""), "until_step": start})
        meta["history"] = history
    elif paths.curve.exists():
        paths.curve.unlink()
    new_curve = not paths.curve.exists()
    with open(paths.curve, "a", newline="") as f:
        log = csv.writer(f)
        columns = ["step", "loss", "x0", "pose", "warp", *(("adv", "adv_w", "critic") if critic else ()), "lr",
                   "seconds"]
        if new_curve:
            log.writerow(columns)
        else:  # resuming: keep the columns the curve was started with
            with open(paths.curve) as existing:
                columns = next(csv.reader(existing), columns)
        parts_logged = [c for c in columns if c not in ("step", "lr", "seconds")]
        t0 = time.time()
        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="train")
        net.train()
        paced_from = None
        for step in bar:
            if time_budget_s is not None and step == start + 2:
                paced_from = time.time()  # the first steps pay for allocation and kernel selection
            if paced_from is not None and step == start + 2 + CALIBRATION_STEPS:
                cfg = replace(cfg, steps=steps_within(step, (time.time() - paced_from) / CALIBRATION_STEPS,
                                                      time_budget_s - (time.time() - t0), cfg.steps))
                meta = dict(meta, train=cfg.to_dict(), time_budget_s=time_budget_s)
                bar.total = cfg.steps
            lr = set_lr(opt, step, cfg)
            batch = make_batch(sampler.sample(np_rng, cfg.batch), cfg, model_cfg, gen, device)
            with autocast(device, precision):
                parts = losses(net, rollout_prev(net, batch, cfg, gen), cfg)
                if critic is not None:
                    parts = add_adversarial(parts, net, critic, batch, cfg, model_cfg, step)
            optimizer_step(opt, parts["loss"], net.parameters(), cfg.grad_clip)
            if critic is not None:
                with autocast(device, precision):
                    parts["critic"] = critic_step(critic, critic_opt, parts, batch, cfg, model_cfg)
            if step % cfg.log_every == 0 or step + 1 == cfg.steps:
                row = [step, *(float(parts[k].detach()) if k in parts else float("nan") for k in parts_logged),
                       lr, round(time.time() - t0, 2)]
                log.writerow(row)
                f.flush()
                bar.set_postfix(loss=f"{row[1]:.4f}", x0=f"{row[2]:.4f}")
            if checkpoint_if_due(paths, net, opt, step, np_rng, gen, meta, cfg, keep_snapshots, aux):
                plot_curve(paths.curve, paths.out / "loss.png")
            if step + 1 >= cfg.steps:
                break
    if start >= cfg.steps and not paths.model.exists():
        save_run(paths, net, opt, start, np_rng, gen, meta, aux)
    return paths.model


CALIBRATION_STEPS = 20


def steps_within(step: int, seconds_per_step: float, seconds_left: float, planned: int) -> int:
    """The schedule length that a run at `step` (0-based, about to run it) finishes within `seconds_left` at
    `seconds_per_step`, never more than `planned` nor fewer than `step + 1` (at least this step runs)."""
    if seconds_per_step <= 0.0:
        return planned
    return max(step + 1, min(planned, step + int(max(0.0, seconds_left) / seconds_per_step)))


def config_summary(cfg: TrainConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)
