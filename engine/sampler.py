"""The few-step sampler: one chunk of frames from noise, then the commit pass.

Noise is a pure function of `(seed, chunk_index, step)`, drawn on the CPU with its own generator, so two
runs that differ only in memory policy see identical noise (the memory harness relies on this), and a
recording regenerated from its actions reproduces the same frames.
"""

from __future__ import annotations

import torch

from world.contract import AttentionMemory, WorldModel

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads nearby (seed, chunk, step) apart


def noise_seed(seed: int, chunk_index: int, step: int) -> int:
    h = (int(seed) * _MIX) ^ (int(chunk_index) * 0xBF58476D1CE4E5B9) ^ (int(step) * 0x94D049BB133111EB)
    return h & 0x7FFF_FFFF_FFFF_FFFF


def chunk_noise(seed: int, chunk_index: int, step: int, shape: tuple[int, ...],
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(noise_seed(seed, chunk_index, step))
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


@torch.inference_mode()
def generate_chunk(model: WorldModel, memory: AttentionMemory, actions: torch.Tensor, *, seed: int,
                   chunk_index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Denoise one chunk through `model.spec.steps`, then commit it to `memory`.

    The caller brackets this with `memory.begin_chunk(...)` / `memory.end_chunk()`.

    Args:
        actions: int64 `[chunk_frames]` action indices.
    Returns:
        `(x0, pose_delta)`: clean latents `[chunk_frames, tokens_per_frame, channels]` and the model's
        `[chunk_frames, 3]` pose deltas (None without a pose head).
    """
    spec = model.spec
    shape = (spec.chunk_frames, *spec.latent_shape)
    device = model.device
    steps = spec.steps
    x = chunk_noise(seed, chunk_index, 0, shape, device)
    x0 = x
    for j, t in enumerate(steps):
        x0 = model.denoise(x, t, actions, memory)
        if j + 1 < len(steps):
            t_next = steps[j + 1]
            x = (1.0 - t_next) * x0 + t_next * chunk_noise(seed, chunk_index, j + 1, shape, device)
    pose = model.commit(x0, actions, memory)
    return x0, pose
