"""A world model shaped like DIAMOND, at toy size with random (seeded) weights.

What it has of DIAMOND's shape, so that reverie runs a model with no attention cache end to end:

* **frame stacking, no KV cache**: the last 4 frames are stacked on the channel axis with the noisy
  frame (`ModelSpec.layers = 0`, `frame_context = 4`); the engine keeps those 4 clean frames per session
  (`engine.sampler.FrameContext`) and the session's memory holds nothing else (policy `none`);
* **pixel space**: the latent is the frame itself, in [-1, 1] (3072 "tokens" of 3 channels at 48x64);
* **EDM**: the network is preconditioned as in EDM (sigma_data 0.5: c_skip, c_out, c_in, and the noise
  level embedded by Fourier features of log(sigma) / 4), and sampled with 3 deterministic Euler steps on
  Karras' schedule from sigma 5 down to 0.002 (rho 7). reverie's levels are flow-matching times
  `t = sigma / (1 + sigma)`, so `x_t = (1 - t) x0 + t noise` is EDM's `x0 + sigma noise` scaled by
  `1 / (1 + sigma)`, which the model undoes before its network sees it;
* **conditioning**: the action (the real game's 27 actions, so it replays Doom rollouts) and the noise
  level, by FiLM on the U-Net's blocks.

An untrained EDM network leaves noise in its frames, so this stand-in blends its denoised estimate with the
last context frame (`PRIOR`, 0.9 of the copy): its frames drift slowly from the last one rather than turn
to noise. Nothing here is trained; a real model drops the blend.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reverie.world.actions import DOOM_ACTIONS
from reverie.world.contract import ModelSpec, WorldModel

H, W, CONTEXT = 48, 64, 4
SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, RHO = 0.5, 5.0, 0.002, 7.0
PRIOR = 0.9  # the stand-in's copy of the last context frame (see the module docstring)


def karras_sigmas(n: int = 3) -> list[float]:
    """EDM's noise levels, highest first."""
    hi, lo = SIGMA_MAX ** (1 / RHO), SIGMA_MIN ** (1 / RHO)
    return [(hi + i / (n - 1) * (lo - hi)) ** RHO for i in range(n)]


class _Block(nn.Module):
    """conv -> FiLM(condition) -> SiLU -> conv, residual."""

    def __init__(self, ch: int, cond: int):
        super().__init__()
        self.a = nn.Conv2d(ch, ch, 3, padding=1)
        self.b = nn.Conv2d(ch, ch, 3, padding=1)
        self.film = nn.Linear(cond, 2 * ch)

    def forward(self, x, c):
        scale, shift = self.film(c)[:, :, None, None].chunk(2, 1)
        return x + self.b(nn.functional.silu(self.a(x) * (1 + scale) + shift))


class _UNet(nn.Module):
    def __init__(self, ch: int = 32, cond: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(3 * (CONTEXT + 1), ch, 3, padding=1)
        self.down = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.mid = _Block(2 * ch, cond)
        self.up = nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1)
        self.enc, self.dec = _Block(ch, cond), _Block(ch, cond)
        self.head = nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, x, c):
        h = self.enc(self.stem(x), c)
        h = self.dec(h + self.up(self.mid(self.down(h), c)), c)
        return self.head(h)


class DiamondShapedWorld(WorldModel):
    """Frame stacking (4 frames), pixel-space EDM, 3 Euler steps, no cache."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)  # nn.Module init draws from the global generator: keep it reproducible
        sigmas = karras_sigmas(3)
        self.spec = ModelSpec(name="diamond-shaped", action_space=DOOM_ACTIONS, frame_shape=(H, W, 3),
                              tokens_per_frame=H * W, latent_shape=(H * W, 3), layers=0, heads=1, head_dim=1,
                              frame_context=CONTEXT, steps=tuple(s / (1 + s) for s in sigmas),
                              sampler="euler", tics_per_step=4)
        self.net = _UNet().eval()
        self.action = nn.Embedding(len(DOOM_ACTIONS), 64)
        self.fourier = torch.randn(32)
        with torch.no_grad():  # start near "return the input": small head, so c_skip carries the frame
            self.net.head.weight.mul_(0.02)
            self.net.head.bias.zero_()

    # --- pixels are the latents -------------------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.to(torch.float32).div(127.5).sub(1.0).reshape(frames.shape[0], H * W, 3)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.reshape(-1, H, W, 3).clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8)

    # --- EDM ---------------------------------------------------------------------------------------------
    def _denoise(self, x: torch.Tensor, t: float, actions: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        sigma = max(t / (1 - t), 1e-6) if t < 1 else SIGMA_MAX
        noisy = x * (1 + sigma)                                   # reverie's x_t -> EDM's x0 + sigma * noise
        c_skip = SIGMA_DATA ** 2 / (sigma ** 2 + SIGMA_DATA ** 2)
        c_out = sigma * SIGMA_DATA / math.sqrt(sigma ** 2 + SIGMA_DATA ** 2)
        c_in = 1 / math.sqrt(sigma ** 2 + SIGMA_DATA ** 2)
        n = x.shape[0]
        frames = noisy.reshape(n, H, W, 3).permute(0, 3, 1, 2)
        past = (context if context is not None else x.new_zeros(0, H * W, 3))[-CONTEXT:]
        past = past.reshape(-1, H, W, 3).permute(0, 3, 1, 2)
        if past.shape[0] < CONTEXT:  # the first frames of a session: repeat the oldest (or start grey)
            fill = past[:1] if past.shape[0] else frames.new_zeros(1, 3, H, W)
            past = torch.cat([fill.expand(CONTEXT - past.shape[0], -1, -1, -1), past])
        stacked = torch.cat([frames * c_in, past.reshape(1, -1, H, W).expand(n, -1, -1, -1)], 1)
        angle = self.fourier * math.log(sigma) / 4
        cond = torch.cat([torch.sin(angle), torch.cos(angle)])[None] + self.action(actions)
        x0 = c_skip * frames + c_out * self.net(stacked, cond)
        x0 = PRIOR * past[-1:] + (1 - PRIOR) * x0
        return x0.permute(0, 2, 3, 1).reshape(n, H * W, 3).clamp(-1, 1)

    @torch.inference_mode()
    def denoise(self, x, t, actions, memory, context=None):
        return self._denoise(x, float(t), actions, context)

    @torch.inference_mode()
    def commit(self, x0, actions, memory, context=None):
        return None  # no cache to write: the engine pushes x0 onto the session's frame context


def build(seed: int = 0, **_ignored) -> DiamondShapedWorld:
    """The entry-point factory: `load_model("diamond-shaped")`."""
    return DiamondShapedWorld(seed=seed)
