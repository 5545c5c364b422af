"""The renderer: a small pixel-space diffusion U-Net that draws the frame the DiT's one-step guess outlines.

Why it exists. The DiT predicts a frame in one step from its memory, one 256-wide token per 16x16 patch,
trained on mean squared error: under uncertain motion that is the average of the possible next frames, a
blur, and fed back as history for hundreds of frames the blur compounds into a colour wash. The renderer
is a diffusion model in pixel space, sampled in a few Euler steps, so what it draws is one sharp sample,
not the average; it is conditioned on:

* the DiT's one-step guess (what memory says the frame holds: layout, a return to a place seen before),
* the previous frame as the DiT's camera warp moved it (the motion the action caused: a turn slides it),
* the two previous frames themselves, with noise of a known level added (`context_sigma`): at play time
  those are the renderer's own outputs, and a model trained only on perfect history feeds its own small
  errors back until they take over (context-noise augmentation, as in GameNGen and DIAMOND),
* the action and the two noise levels (`log sigma` of the sample and of the context), by adaptive
  group-norm scales and shifts in every residual block.

Parametrisation (EDM, Karras et al. 2022): the frame `x0` in [-1, 1], `x = x0 + sigma * noise`, and
`D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)` with `sigma_data` 0.5. The engine's sampler speaks flow
matching, `x_t = (1 - t) x0 + t noise`, which is the same path: `sigma = t / (1 - t)` and
`x_sigma = x_t / (1 - t)` (`sigma_to_t`, `t_to_sigma`).

Sampling (`RendererConfig.start`, `sample_sigmas`, `sampler`). By default the renderer starts from the DiT's
guess with noise of level `sample_sigmas[0]` added (as SDEdit edits an image: the guess already holds
the layout, the renderer redraws its detail), then re-noises its estimate to each next level with a
fresh draw. A renderer trained for a few thousand CPU steps is not yet a good enough denoiser for the
deterministic Euler chain from pure noise (`start="noise"`, `sampler="euler"`, Karras' schedule from
sigma 5 to 0.002 with rho 7: `karras_sigmas`), which is how well-trained EDM models are sampled: on
teacher-forced held-out frames it scored 3 dB under its own one-step guess (docs/experiments.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True, slots=True)
class RendererConfig:
    """Architecture and sampling of the renderer.

    Attributes:
        channels: feature channels per U-Net level (full, 1/2, 1/4 ... resolution).
        blocks: residual blocks per level on the way down (one more on the way up).
        cond_dim: width of the conditioning vector (noise levels + action).
        num_actions: discrete actions (the DiT's action space).
        sigma_data: the data's standard deviation assumed by the EDM preconditioning.
        sigma_min, sigma_max, rho, sample_steps: the Karras sampling schedule (`karras_sigmas`), used
            when `sample_sigmas` is empty.
        sample_sigmas: the noise levels the sampler visits, highest first (`sampling_sigmas`).
        start: "guess" (the first level is the DiT's guess plus noise of that level) or "noise" (pure noise).
        sampler: "renoise" (a fresh noise draw for each next level) or "euler" (the deterministic step);
            the engine's `ModelSpec.sampler`.
        play_context_sigma: the context noise level declared for the previous frames at play time.
        anchor: what the diffusion runs around. "none": the frame itself. "warped": the frame's difference
            from the warped previous frame (residual diffusion, as CorrDiff does over a regression
            model's mean): the copy path carries the place and the turn from frame to frame, and the
            sampled difference draws what the move revealed and what the context noise hid.
    """

    channels: tuple[int, ...] = (32, 64, 128)
    blocks: int = 2
    cond_dim: int = 128
    num_actions: int = 27
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 5.0
    rho: float = 7.0
    sample_steps: int = 3
    sample_sigmas: tuple[float, ...] = (1.0, 0.2)
    start: str = "guess"
    sampler: str = "renoise"
    play_context_sigma: float = 0.02
    anchor: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "sample_sigmas", tuple(float(v) for v in self.sample_sigmas))
        if list(self.sample_sigmas) != sorted(self.sample_sigmas, reverse=True) or any(v <= 0 for v in self.sample_sigmas):
            raise ValueError(f"sample_sigmas must be positive and decreasing, got {self.sample_sigmas}")
        if self.start not in ("guess", "noise") or self.sampler not in ("renoise", "euler"):
            raise ValueError(f"start must be guess|noise and sampler renoise|euler, got {self.start}, {self.sampler}")
        if self.anchor not in ("none", "warped"):
            raise ValueError(f"anchor must be none|warped, got {self.anchor!r}")
        if not self.channels or any(c < 8 or c % 8 for c in self.channels):
            raise ValueError(f"channels must be multiples of 8 (group norm), got {self.channels}")
        if self.blocks < 1 or self.sample_steps < 1 or self.num_actions < 1:
            raise ValueError("blocks, sample_steps and num_actions must be >= 1")
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError("need 0 < sigma_min < sigma_max")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["sample_sigmas"] = list(self.sample_sigmas)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RendererConfig":
        from reverie.world.dit.config import config_from_dict

        return config_from_dict(cls, data)


# -- noise levels ---------------------------------------------------------------------------------------
def karras_sigmas(cfg: RendererConfig) -> list[float]:
    """The `sample_steps` noise levels the sampler visits, highest first (Karras' rho schedule)."""
    n = cfg.sample_steps
    if n == 1:
        return [cfg.sigma_max]
    lo, hi = cfg.sigma_min ** (1.0 / cfg.rho), cfg.sigma_max ** (1.0 / cfg.rho)
    return [(hi + i / (n - 1) * (lo - hi)) ** cfg.rho for i in range(n)]


def sampling_sigmas(cfg: RendererConfig) -> list[float]:
    """The noise levels the sampler visits: `sample_sigmas`, or Karras' schedule when that is empty."""
    return list(cfg.sample_sigmas) if cfg.sample_sigmas else karras_sigmas(cfg)


def sigma_to_t(sigma: float) -> float:
    """EDM noise level -> the engine's flow-matching level `t = sigma / (1 + sigma)`."""
    return float(sigma) / (1.0 + float(sigma))


def t_to_sigma(t: float) -> float:
    """Inverse of `sigma_to_t` (t < 1)."""
    if not 0.0 <= t < 1.0:
        raise ValueError(f"the renderer needs t in [0, 1), got {t}")
    return float(t) / (1.0 - float(t))


def fourier(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Sinusoidal features `[..., dims]` of a scalar per row `x` `[...]` (log-noise levels, O(1))."""
    half = dims // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(64.0), half, device=x.device))
    args = x.float()[..., None] * freqs
    return torch.cat((args.cos(), args.sin()), -1)


# -- the network ----------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the second norm scaled and shifted by the conditioning; zero-initialised
    last conv, so a fresh block is the identity (plus a 1x1 skip when the width changes)."""

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[..., None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1.0 + scale) + shift))
        return self.skip(x) + h


class Renderer(nn.Module):
    """U-Net `F` and its EDM wrapper `denoise` (see the module docstring).

    Inputs are images `[B, 3, H, W]` in [-1, 1]; `H` and `W` must divide by `2 ** (len(channels) - 1)`.
    """

    IN_IMAGES = 5  # the noisy frame, the DiT's guess, the warped previous frame, the two previous frames

    def __init__(self, cfg: RendererConfig):
        super().__init__()
        self.cfg = cfg
        c, d = cfg.channels, cfg.cond_dim
        self.sigma_mlp = nn.Sequential(nn.Linear(64, d), nn.SiLU(), nn.Linear(d, d))
        self.context_mlp = nn.Sequential(nn.Linear(64, d), nn.SiLU(), nn.Linear(d, d))
        self.act_emb = nn.Embedding(cfg.num_actions, d)
        nn.init.normal_(self.act_emb.weight, std=0.02)
        self.stem = nn.Conv2d(3 * self.IN_IMAGES, c[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = []
        width = c[0]
        for level, ch in enumerate(c):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks):
                blocks.append(ResBlock(width, ch, d))
                width = ch
                skips.append(width)
            self.down.append(blocks)
            if level + 1 < len(c):
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(width, width, d), ResBlock(width, width, d)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(c))):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks):
                blocks.append(ResBlock(width + skips.pop(), c[level], d))
                width = c[level]
            self.up.append(blocks)
            if level > 0:
                self.upsample.append(nn.Conv2d(width, c[level - 1], 3, padding=1))
                width = c[level - 1]
        self.norm_out = nn.GroupNorm(8, width)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def condition(self, sigma: torch.Tensor, context_sigma: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """`[B]` noise levels, context noise levels and actions -> conditioning `[B, cond_dim]`."""
        s = self.sigma_mlp(fourier(sigma.log() / 4.0, 64))
        c = self.context_mlp(fourier(context_sigma.clamp_min(1e-4).log() / 4.0, 64))
        return F.silu(s + c + self.act_emb(actions))

    def network(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The raw U-Net `F`: `[B, 3 * IN_IMAGES, H, W]` inputs -> `[B, 3, H, W]`."""
        h = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, cond)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        for block in self.mid:
            h = block(h, cond)
        for i, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat((h, skips.pop()), 1), cond)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.norm_out(h)))

    def preconditioning(self, sigma: torch.Tensor):
        """EDM's `c_skip, c_out, c_in` for `[B]` noise levels, shaped `[B, 1, 1, 1]`."""
        sd = self.cfg.sigma_data
        s = sigma[:, None, None, None]
        c_skip = sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
        c_in = 1.0 / (s ** 2 + sd ** 2).sqrt()
        return c_skip, c_out, c_in

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, guess: torch.Tensor, warped: torch.Tensor,
                prev1: torch.Tensor, prev2: torch.Tensor, context_sigma: torch.Tensor,
                actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoised frame `D(x; sigma)` `[B, 3, H, W]`, and the raw output `F` (what training fits).

        Args:
            x: noisy frames `x0 + sigma * noise`; sigma: `[B]` their noise levels.
            guess, warped, prev1, prev2: the DiT's guess, the warped previous frame, the previous frame and
                the one before it (images in [-1, 1]; the last three already carry their context noise).
            context_sigma: `[B]` that context noise level; actions: `[B]` int64.
        """
        c_skip, c_out, c_in = self.preconditioning(sigma)
        base = self.base(warped)
        x = x - base
        inputs = torch.cat((c_in * x, guess, warped, prev1, prev2), 1)
        raw = self.network(inputs, self.condition(sigma, context_sigma, actions))
        return base + c_skip * x + c_out * raw, raw

    def base(self, warped: torch.Tensor) -> torch.Tensor | float:
        """What the diffusion runs around (`RendererConfig.anchor`): the warped previous frame, or 0."""
        return warped if self.cfg.anchor == "warped" else 0.0

    def target(self, x0: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        """What `F` should output for clean `x0` at noisy `x` (EDM's effective training target)."""
        c_skip, c_out, _ = self.preconditioning(sigma)
        base = self.base(warped)
        return ((x0 - base) - c_skip * (x - base)) / c_out

    @torch.no_grad()
    def sample(self, guess: torch.Tensor, warped: torch.Tensor, prev1: torch.Tensor, prev2: torch.Tensor,
               context_sigma: torch.Tensor, actions: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A batch of frames drawn as play draws them (`sampling_sigmas`, `start`, `sampler`), for training
        on its own outputs; play itself samples through `engine.sampler` and `DiTWorldModel.denoise`."""
        levels = sampling_sigmas(self.cfg)
        noise = torch.randn(guess.shape, generator=gen)
        x = (guess if self.cfg.start == "guess" else 0.0) + levels[0] * noise
        n = len(guess)
        for i, sigma in enumerate(levels):
            d, _ = self(x, torch.full((n,), sigma), guess, warped, prev1, prev2, context_sigma, actions)
            if i + 1 < len(levels):
                step = (x - d) / sigma if self.cfg.sampler == "euler" else torch.randn(guess.shape, generator=gen)
                x = d + levels[i + 1] * step
        return d.clamp(-1.0, 1.0)
