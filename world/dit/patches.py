"""Frames <-> patch latents: the default model's exact, invertible pixel-space "encoder".

A latent is a frame's non-overlapping `patch x patch` RGB patches in raster order, each flattened
(`[..., (H/p)*(W/p), p*p*3]`), values scaled to [-1, 1]. `to_latents`/`to_pixels` are the pure float
reshapes (the camera warp resamples in between); `patchify`/`unpatchify` add the uint8 scaling.
"""

from __future__ import annotations

import torch


def to_latents(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """Float `[..., H, W, C]` -> `[..., (H/p)*(W/p), p*p*C]` (raster order of patches)."""
    *lead, h, w, c = pixels.shape
    x = pixels.reshape(*lead, h // patch, patch, w // patch, patch, c)
    x = x.movedim(-4, -3)  # [..., gh, gw, p, p, c]
    return x.reshape(*lead, (h // patch) * (w // patch), patch * patch * c)


def to_pixels(latents: torch.Tensor, patch: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `to_latents` for RGB: `[..., T, p*p*3]` -> float `[..., H, W, 3]` (no clamping)."""
    *lead, _, _ = latents.shape
    x = latents.reshape(*lead, h // patch, w // patch, patch, patch, 3).movedim(-3, -4)
    return x.reshape(*lead, h, w, 3)


def patchify(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """uint8 `[..., H, W, 3]` -> `[..., (H/p)*(W/p), p*p*3]` float32 in [-1, 1] (raster order of patches)."""
    return to_latents(frames.to(torch.float32) / 127.5 - 1.0, patch)


def unpatchify(latents: torch.Tensor, patch: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `patchify`, to uint8 `[..., H, W, 3]`."""
    return ((to_pixels(latents, patch, h, w).clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
