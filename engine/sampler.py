"""The few-step sampler: one chunk of frames from noise, then the commit pass.

`FrameContext` keeps, per session, the latest clean latents of a frame-stacking model
(`ModelSpec.frame_context`); `commit_frames` commits known frames (a session's first real frames) through it.

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


class FrameContext:
    """The latest `spec.frame_context` clean latents of one session (empty for models that take none).

    `kwargs()` is what `denoise`/`commit` get (`{}` for models without frame context, so their methods
    need not accept `context`); `push` appends committed latents; `reset` starts a new session.
    """

    def __init__(self, spec):
        self.size = int(spec.frame_context)
        self.latents: torch.Tensor | None = None

    def kwargs(self) -> dict:
        return {"context": self.latents} if self.size else {}

    def push(self, x0: torch.Tensor) -> None:
        if not self.size:
            return
        both = x0 if self.latents is None else torch.cat((self.latents, x0))
        self.latents = both[-self.size:]

    def reset(self) -> None:
        self.latents = None


@torch.inference_mode()
def commit_frames(model: WorldModel, memory: AttentionMemory, latents: torch.Tensor, actions: torch.Tensor,
                  context: FrameContext):
    """Commit known clean latents `[n, T, C]` (with their actions) as one chunk; returns the pose deltas."""
    pose = model.commit(latents, actions, memory, **context.kwargs())
    context.push(latents)
    return pose


@torch.inference_mode()
def generate_chunk(model: WorldModel, memory: AttentionMemory, actions: torch.Tensor, *, seed: int,
                   chunk_index: int, context: FrameContext | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Denoise one chunk through `model.spec.steps`, then commit it to `memory`.

    The caller brackets this with `memory.begin_chunk(...)` / `memory.end_chunk()`.

    Args:
        actions: int64 `[chunk_frames]` action indices.
        context: the session's `FrameContext` (required when `spec.frame_context > 0`); the new frames
            are pushed onto it.
    Returns:
        `(x0, pose_delta)`: clean latents `[chunk_frames, tokens_per_frame, channels]` and the model's
        `[chunk_frames, 3]` pose deltas (None without a pose head).
    """
    spec = model.spec
    if context is None:
        if spec.frame_context:
            raise ValueError(f"model '{spec.name}' takes {spec.frame_context} previous frame(s) directly; "
                             "pass the session's FrameContext")
        context = FrameContext(spec)
    shape = (spec.chunk_frames, *spec.latent_shape)
    device = model.device
    steps = spec.steps
    ctx = context.kwargs()
    x = chunk_noise(seed, chunk_index, 0, shape, device)
    x0 = x
    for j, t in enumerate(steps):
        x0 = model.denoise(x, t, actions, memory, **ctx)
        if j + 1 < len(steps):
            t_next = steps[j + 1]
            x = (1.0 - t_next) * x0 + t_next * chunk_noise(seed, chunk_index, j + 1, shape, device)
    pose = model.commit(x0, actions, memory, **ctx)
    context.push(x0)
    return x0, pose
