"""Training the renderer (`world.dit.renderer`) on top of a frozen DiT: `reverie train --config render`.

Each step draws windows of real frames (some with revisit frames of the same place, as spatial retrieval
brings back at play time) and runs the frozen DiT over them the way play does, teacher-forced: every frame's
one-step guess from pure noise (t = 1) with the real earlier frames as clean history, and the previous
frame moved by the DiT's camera warp. For the last `frames_per_window` frames of every window the renderer
then learns EDM denoising of the real frame from that guess, that warped previous frame and the two
previous real frames, the last three under context noise of a random level that is also an input
(`context_sigma`: at play time the history is the renderer's own output, not the game's).

Everything random comes from generators seeded by the run's seed; a run resumes from its last snapshot
(`--resume`), and writes `OUT/model.safetensors` (the renderer alone) like `world.dit.train` does.
`python -m reverie.world.dit.release --renderer OUT/model.safetensors` bundles it with the DiT as the default model.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reverie.world.dit.config import GameData, TrainConfig, config_with_overrides
from reverie.world.dit.data import Episode, WindowSampler
from reverie.world.dit.network import DiTNet
from reverie.world.dit.patches import patchify, to_latents, to_pixels
from reverie.world.dit.renderer import Renderer, RendererConfig


@dataclass(frozen=True, slots=True)
class RenderTrainConfig(GameData):
    """One renderer training run.

    Attributes:
        renderer: the architecture trained.
        steps, batch, lr, warmup, weight_decay, grad_clip: optimisation (`batch` windows per step; each
            gives `frames_per_window` training frames).
        window, revisit_frames, revisit_prob: the windows the DiT sees (as in `TrainConfig`; revisit
            frames are the nearest in pose).
        p_mean, p_std: log-normal distribution of the training noise level (EDM).
        context_mean, context_std, context_max: log-normal distribution of the context noise level,
            clamped at `context_max`; `context_clean_prob` of the frames instead get about the play-time level.
        first_frame_prob: share of frames whose second previous frame repeats the first (as at a session's
            start, when only the seed frame is known).
        rollout_frames: self-forcing: the window frames before the trained ones, this many of them, are the
            renderer's own (drawn as play draws them, the DiT's guesses made over them), so it learns to pull
            its own history back toward the game (0: teacher forcing).
        init: a renderer checkpoint to start from (a fine-tune: fresh optimizer and schedule).
        maps, drivers, episodes_per, episode_steps, tics_per_step: the data recipe (`GameData`).
    """

    renderer: RendererConfig = field(default_factory=RendererConfig)
    steps: int = 6000
    batch: int = 8
    frames_per_window: int = 4
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    window: int = 8
    revisit_frames: int = 2
    revisit_prob: float = 0.5
    p_mean: float = -0.4
    p_std: float = 1.2
    context_mean: float = -2.0
    context_std: float = 1.2
    context_max: float = 1.0
    context_clean_prob: float = 0.3
    first_frame_prob: float = 0.05
    rollout_frames: int = 0
    init: str = ""
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.renderer, dict):
            object.__setattr__(self, "renderer", RendererConfig.from_dict(self.renderer))
        GameData.__post_init__(self)
        if not 1 <= self.frames_per_window <= self.window - 2:
            raise ValueError("frames_per_window must be in [1, window - 2] (each needs two previous frames)")
        if self.rollout_frames and (self.frames_per_window != 1 or not 0 < self.rollout_frames <= self.window - 3):
            raise ValueError("self-forcing trains the last frame only (frames_per_window=1) after at most "
                             "window - 3 frames of its own (two real frames come first)")
        if self.steps < 1 or self.batch < 1:
            raise ValueError("steps and batch must be >= 1")

    def data_config(self) -> TrainConfig:
        """The `TrainConfig` that draws this run's episodes and windows."""
        return TrainConfig(window=self.window, revisit_frames=self.revisit_frames, revisit_prob=self.revisit_prob,
                           revisit_nearest=True, **self.game_data())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["renderer"] = self.renderer.to_dict()
        return data

    def with_overrides(self, **kw) -> "RenderTrainConfig":
        """A copy with the given fields replaced (None: keep); an unknown field name is a ValueError."""
        return config_with_overrides(self, kw)


RESIDUAL = RendererConfig(channels=(24, 48, 96), anchor="warped", sigma_data=0.25, sample_sigmas=(0.5, 0.1))
RENDER_PRESETS: dict[str, RenderTrainConfig] = {
    "render": RenderTrainConfig(renderer=RendererConfig(channels=(24, 48, 96))),
    # stage 2: self-forcing from stage 1 (`--set init=runs/render1/model.safetensors`)
    "render-sf": RenderTrainConfig(renderer=RendererConfig(channels=(24, 48, 96)), steps=1200, batch=12,
                                   frames_per_window=1, rollout_frames=4, lr=2e-4, warmup=50),
    # residual diffusion around the warped previous frame (`RendererConfig.anchor`), teacher-forced; init
    # from stage 1's weights (`--set init=runs/render1/model.safetensors`), then self-forced (`render-res-sf`)
    "render-res": RenderTrainConfig(renderer=RESIDUAL, steps=1200, p_mean=-1.2),
    "render-res-sf": RenderTrainConfig(renderer=RESIDUAL, steps=600, batch=12, frames_per_window=1, rollout_frames=4,
                                       lr=2e-4, warmup=50, p_mean=-1.2),
    "render-tiny": RenderTrainConfig(renderer=RendererConfig(channels=(8, 16), blocks=1, cond_dim=16),
                                     steps=3, batch=2, frames_per_window=2, window=6, warmup=1,
                                     checkpoint_every=2, log_every=1, maps=("maze",), drivers=("random",),
                                     episodes_per=1, episode_steps=40),
}


def images(latents: torch.Tensor, cfg) -> torch.Tensor:
    """DiT patch latents `[..., T, P]` -> images `[..., 3, H, W]`."""
    return to_pixels(latents, cfg.patch, cfg.frame_h, cfg.frame_w).movedim(-1, -3)


@torch.no_grad()
def dit_guesses(dit: DiTNet, sample: dict[str, np.ndarray], cfg: RenderTrainConfig, noise: torch.Tensor,
                window: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen DiT's one-step guess of every window frame and its warped previous frame, as play makes
    them: images `[B, W, 3, H, W]` each. The history is the window's real frames, or `window` (images
    `[B, W, 3, H, W]`, e.g. the renderer's own frames) in their place; `noise` is the DiT's input, latents
    `[B, W, T, P]` at its top level."""
    r, w = cfg.revisit_frames, cfg.window
    mc = dit.cfg
    x0 = patchify(torch.from_numpy(sample["frames"]), mc.patch)
    prev = patchify(torch.from_numpy(sample["prev_frames"]), mc.patch)
    if window is not None:
        own = to_latents(window.movedim(-3, -1), mc.patch)
        x0 = torch.cat((x0[:, :r], own), 1)
        prev = torch.cat((prev[:, :r + 1], own[:, :-1]), 1)  # inside the window, each frame's predecessor
    b = x0.shape[0]
    x = torch.cat((x0, noise), 1)
    t = torch.cat((torch.zeros(b, r + w), torch.ones(b, w)), 1)
    actions = torch.from_numpy(sample["actions"])
    pos = torch.from_numpy(sample["pos"])
    prev = prev * torch.from_numpy(sample["has_prev"])[..., None, None]
    out, _, moved = dit.forward_doubled(x, t, torch.cat((actions, actions[:, r:]), 1),
                                        torch.cat((pos, pos[:, r:]), 1), r,
                                        torch.from_numpy(sample["revisit_valid"]),
                                        prev=torch.cat((prev, prev[:, r:]), 1), with_prev=True)
    return images(out[:, r + w:], mc), images(moved[:, r + w:], mc)


@torch.no_grad()
def rollout(dit: DiTNet, renderer: Renderer, sample: dict[str, np.ndarray], cfg: RenderTrainConfig,
            frames: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Self-forcing: window frames `W-1-rollout_frames .. W-2` replaced by the renderer's own, each drawn
    as play draws it (`Renderer.sample` from the DiT's guess, the DiT seeing the frames drawn so far).
    Returns the window's frames (real before, own after), and the DiT's guesses and warped previous
    frames over that history (images `[B, W, 3, H, W]`)."""
    r, w = cfg.revisit_frames, cfg.window
    noise = torch.randn((frames.shape[0], w, *dit_latent_shape(dit)), generator=gen)
    own = frames.clone()
    actions = torch.from_numpy(sample["actions"][:, r:])
    play = torch.full((frames.shape[0],), renderer.cfg.play_context_sigma)
    for j in range(w - 1 - cfg.rollout_frames, w - 1):
        guess, warped = dit_guesses(dit, sample, cfg, noise, own)
        own[:, j] = renderer.sample(guess[:, j], warped[:, j], own[:, j - 1], own[:, j - 2], play, actions[:, j],
                                    gen)
    guess, warped = dit_guesses(dit, sample, cfg, noise, own)
    return own, guess, warped


def dit_latent_shape(dit: DiTNet) -> tuple[int, int]:
    return dit.cfg.tokens_per_frame, dit.cfg.patch_dim


def context_sigmas(cfg: RenderTrainConfig, n: int, gen: torch.Generator) -> torch.Tensor:
    """`[n]` context noise levels (see `RenderTrainConfig`)."""
    noisy = (torch.randn(n, generator=gen) * cfg.context_std + cfg.context_mean).exp().clamp_max(cfg.context_max)
    play = cfg.renderer.play_context_sigma * (0.5 + torch.rand(n, generator=gen))
    return torch.where(torch.rand(n, generator=gen) < cfg.context_clean_prob, play, noisy)


def make_batch(dit: DiTNet, sample: dict[str, np.ndarray], cfg: RenderTrainConfig, gen: torch.Generator,
               renderer: Renderer | None = None) -> dict:
    """Renderer inputs and targets for the last `frames_per_window` frames of each window (with
    `rollout_frames`, the history before them is the renderer's own: `rollout`)."""
    r, w, k = cfg.revisit_frames, cfg.window, cfg.frames_per_window
    frames = torch.from_numpy(sample["frames"][:, r:]).movedim(-1, -3).float() / 127.5 - 1.0  # [B, W, 3, H, W]
    if cfg.rollout_frames:
        history, guess, warped = rollout(dit, renderer, sample, cfg, frames, gen)
    else:
        noise = torch.randn((frames.shape[0], w, *dit_latent_shape(dit)), generator=gen)
        history = frames
        guess, warped = dit_guesses(dit, sample, cfg, noise)
    pick = slice(w - k, w)
    x0 = frames[:, pick].flatten(0, 1)
    prev1 = history[:, w - k - 1:w - 1].flatten(0, 1)
    prev2 = history[:, w - k - 2:w - 2].flatten(0, 1)
    n = x0.shape[0]
    first = torch.rand(n, generator=gen) < cfg.first_frame_prob
    prev2 = torch.where(first[:, None, None, None], prev1, prev2)
    cs = context_sigmas(cfg, n, gen)
    s4 = cs[:, None, None, None]
    noisy_ctx = [c + s4 * torch.randn(c.shape, generator=gen)
                 for c in (warped[:, pick].flatten(0, 1), prev1, prev2)]
    sigma = (torch.randn(n, generator=gen) * cfg.p_std + cfg.p_mean).exp()
    x = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=gen)
    actions = torch.from_numpy(sample["actions"][:, r:][:, pick]).flatten()
    return {"x": x, "sigma": sigma, "x0": x0, "guess": guess[:, pick].flatten(0, 1), "warped": noisy_ctx[0],
            "prev1": noisy_ctx[1], "prev2": noisy_ctx[2], "context_sigma": cs, "actions": actions}


def loss(renderer: Renderer, batch: dict) -> torch.Tensor:
    """EDM's loss: the raw output against its target, which weights every noise level evenly."""
    _, raw = renderer(batch["x"], batch["sigma"], batch["guess"], batch["warped"], batch["prev1"],
                      batch["prev2"], batch["context_sigma"], batch["actions"])
    return F.mse_loss(raw, renderer.target(batch["x0"], batch["x"], batch["sigma"], batch["warped"]))


def train_renderer(episodes: list[Episode], dit: DiTNet, cfg: RenderTrainConfig, out: str | Path, *, seed: int = 0,
                   resume: bool = False, extra_meta: dict | None = None, progress: bool = True,
                   keep_snapshots: int = 0) -> Path:
    """Train a `Renderer` on `episodes` over the frozen `dit`; returns the path of its checkpoint."""
    from tqdm import tqdm

    from reverie.world.dit.runs import RunPaths, checkpoint_if_due, optimizer_step, resume_run, save_run, set_lr

    torch.set_num_threads(cfg.threads)
    paths = RunPaths(Path(out))
    paths.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    renderer = Renderer(cfg.renderer)
    if cfg.init:
        from reverie.world.checkpoint import load_state

        expected = {n: t.shape for n, t in renderer.state_dict().items()}
        renderer.load_state_dict(load_state(cfg.init, expected))
    dit = dit.eval().requires_grad_(False)
    opt = torch.optim.AdamW(renderer.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    np_rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    sampler = WindowSampler(episodes, cfg.data_config())
    meta = {"renderer": cfg.renderer.to_dict(), "render_train": cfg.to_dict(), "seed": seed,
            "frames": int(sum(len(e) for e in episodes)), "episodes": len(episodes), "dit_config_hash": dit.cfg.hash(),
            "device": "cpu", "precision": "fp32", **(extra_meta or {})}
    start = 0
    if resume and paths.state.is_file():
        start = resume_run(paths, renderer, opt, np_rng, gen)
    elif paths.curve.exists():
        paths.curve.unlink()
    new_curve = not paths.curve.exists()
    with open(paths.curve, "a", newline="") as f:
        log = csv.writer(f)
        if new_curve:
            log.writerow(["step", "loss", "lr", "seconds"])
        t0 = time.time()
        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="render")
        renderer.train()
        for step in bar:
            lr = set_lr(opt, step, cfg)
            renderer.eval()  # the self-forcing rollout samples as play does
            batch = make_batch(dit, sampler.sample(np_rng, cfg.batch), cfg, gen, renderer)
            renderer.train()
            value = loss(renderer, batch)
            optimizer_step(opt, value, renderer.parameters(), cfg.grad_clip)
            if step % cfg.log_every == 0 or step + 1 == cfg.steps:
                log.writerow([step, float(value.detach()), lr, round(time.time() - t0, 2)])
                f.flush()
                bar.set_postfix(loss=f"{float(value.detach()):.4f}")
            checkpoint_if_due(paths, renderer, opt, step, np_rng, gen, meta, cfg, keep_snapshots)
    if start >= cfg.steps and not paths.model.exists():
        save_run(paths, renderer, opt, start, np_rng, gen, meta)
    return paths.model
