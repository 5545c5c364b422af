"""Degradation augmentation of the frames a model conditions on: the blur and colour cast of its own frames.

In free play a model's history is its own output, and a one-step model's output is soft (the average of
the futures it cannot tell apart) with a small colour bias, both of which compound frame after frame. A
model trained only on real history never sees such input and never learns to undo it. Here the frames a
training window conditions on (its previous-frame inputs and the clean copies it attends to) are degraded
the way its own frames are, while the target stays the real frame, so the model learns a restoring pull:
sharpen what came in soft, and bring a cast back toward the game's colours.

A window's degradation is drawn once and applied to all its conditioning frames, as a drift is shared by
consecutive frames of play: a Gaussian blur of standard deviation `s ~ U(0, blur_max)` pixels and a
per-channel affine colour cast `x * (1 + g) + c` with `g, c ~ U(-colour_max, colour_max)` (in [-1, 1]
pixel units), clamped back to [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernels(sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels `[n, 2 * radius + 1]`; a sigma of 0 gives the identity kernel."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigmas.float().clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (x[None] / s) ** 2)
    return k / k.sum(1, keepdim=True)


def blur(images: torch.Tensor, sigmas: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur of images `[n, H, W, C]` (any range), each with its own sigma `[n]`;
    edges replicate."""
    n, h, w, c = images.shape
    k = gaussian_kernels(sigmas, radius).to(images.device)  # [n, K]
    x = images.permute(0, 3, 1, 2).reshape(1, n * c, h, w)
    kk = k.repeat_interleave(c, 0)  # [n*C, K]
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kk[:, None, None, :], groups=n * c)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, kk[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w).permute(0, 2, 3, 1)


def degrade_windows(frames: torch.Tensor, prob: float, blur_max: float, colour_max: float,
                    gen: torch.Generator) -> torch.Tensor:
    """Degrade windows of images `[B, n, H, W, C]` in [-1, 1]: each window, with probability `prob`, gets
    one blur and one colour cast for all its `n` frames (see the module docstring). The draws come from
    `gen` on the CPU whatever `frames`' device."""
    if prob <= 0.0 or (blur_max <= 0.0 and colour_max <= 0.0):
        return frames
    b, n, h, w, c = frames.shape
    on = (torch.rand(b, generator=gen) < prob).float()
    sigma = torch.rand(b, generator=gen) * blur_max * on
    gain = (torch.rand(b, c, generator=gen) * 2 - 1) * colour_max * on[:, None]
    bias = (torch.rand(b, c, generator=gen) * 2 - 1) * colour_max * on[:, None]
    gain, bias = gain.to(frames.device), bias.to(frames.device)
    out = blur(frames.reshape(b * n, h, w, c), sigma.repeat_interleave(n)).reshape(b, n, h, w, c)
    out = out * (1 + gain[:, None, None, None]) + bias[:, None, None, None]
    return out.clamp(-1.0, 1.0)
