"""The few-step sampler: one chunk of frames from noise, then the commit pass.

`FrameContext` keeps, per session, the latest clean latents of a frame-stacking model
(`ModelSpec.frame_context`); `commit_frames` commits known frames (a session's first real frames) through it.

Noise is a pure function of `(seed, chunk_index, step)`, drawn on the CPU with its own generator, so two
runs that differ only in memory policy see identical noise (the memory harness relies on this), and a
recording regenerated from its actions reproduces the same frames.
"""

from __future__ import annotations

import torch

from reverie.world.contract import AttentionMemory, WorldModel

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads nearby (seed, chunk, step) apart


def noise_seed(seed: int, chunk_index: int, step: int) -> int:
    h = (int(seed) * _MIX) ^ (int(chunk_index) * 0xBF58476D1CE4E5B9) ^ (int(step) * 0x94D049BB133111EB)
    return h & 0x7FFF_FFFF_FFFF_FFFF


def chunk_noise(seed: int, chunk_index: int, step: int, shape: tuple[int, ...],
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(noise_seed(seed, chunk_index, step))
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


class FrameContext:
    """What one session gives its model besides memory: the latest `spec.frame_context` clean latents
    (empty for models that take none), and the session's prompt (models with `spec.prompt_tokens`).

    `kwargs()` is what `denoise`/`commit` get (`{}` for models that take neither, so their methods need not
    accept `context` or `prompt`); `push` appends committed latents; `reset` starts the latents again (the
    prompt stays: it belongs to the session's seed frame, which the session sets).
    """

    def __init__(self, spec):
        self.size = int(spec.frame_context)
        self.takes_prompt = spec.prompt_tokens > 0
        self.latents: torch.Tensor | None = None
        self.prompt: torch.Tensor | None = None

    def kwargs(self) -> dict:
        out = {"context": self.latents} if self.size else {}
        if self.takes_prompt:
            out["prompt"] = self.prompt
        return out

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


def next_sample(spec, x: torch.Tensor, x0: torch.Tensor, t: float, t_next: float, seed: int, chunk_index: int,
                step: int) -> torch.Tensor:
    """The sample at level `t_next` from the sample `x` at level `t` and the model's clean estimate `x0`.

    `spec.sampler == "renoise"`: fresh noise, `(1 - t_next) x0 + t_next noise` (each step a new draw).
    `"euler"`: the deterministic Euler step of the probability-flow ODE, which keeps the noise the model
    implied, `eps = (x - (1 - t) x0) / t`, so `(1 - t_next) x0 + t_next eps` (DDIM; in EDM's sigma terms,
    `x0 + sigma_next / sigma * (x_sigma - x0)`).
    """
    if spec.sampler == "euler":
        eps = (x - (1.0 - t) * x0) / t
    else:
        eps = chunk_noise(seed, chunk_index, step, x.shape, x.device)
    return (1.0 - t_next) * x0 + t_next * eps


@torch.inference_mode()
def sample_chunk(model: WorldModel, memory: AttentionMemory, actions: torch.Tensor, *, seed: int,
                 chunk_index: int, context: FrameContext) -> torch.Tensor:
    """Denoise one chunk through `model.spec.steps` (no commit); returns its clean latents.

    The first sample is `steps[0] * noise`: at the top level the sample is noise of that scale (at
    `t = 1`, pure noise), whatever the frame.
    """
    spec = model.spec
    shape = (spec.chunk_frames, *spec.latent_shape)
    steps = spec.steps
    ctx = context.kwargs()
    x = steps[0] * chunk_noise(seed, chunk_index, 0, shape, model.device)
    x0 = x
    for j, t in enumerate(steps):
        x0 = model.denoise(x, t, actions, memory, **ctx)
        if j + 1 < len(steps):
            x = next_sample(spec, x, x0, t, steps[j + 1], seed, chunk_index, j + 1)
    return x0


@torch.inference_mode()
def generate_chunk(model: WorldModel, memory: AttentionMemory, actions: torch.Tensor, *, seed: int,
                   chunk_index: int, context: FrameContext | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Denoise one chunk through `model.spec.steps` (`sample_chunk`), then commit it to `memory`.

    The caller brackets this with `memory.begin_chunk(...)` / `memory.end_chunk()`.

    Args:
        actions: per-frame actions as the model takes them (`ActionSpace.tensor`).
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
    x0 = sample_chunk(model, memory, actions, seed=seed, chunk_index=chunk_index, context=context)
    pose = model.commit(x0, actions, memory, **context.kwargs())
    context.push(x0)
    return x0, pose
