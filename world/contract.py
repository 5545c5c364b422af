"""The contract every world model implements, and the memory edge it talks to.

One frame's journey through a model (see docs/architecture.md): the engine draws noise for the current chunk, calls
`denoise` once per step of `spec.steps` (each call attends to the cached history through the memory
view), then calls `commit` on the clean result, the only pass whose keys/values are kept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from reverie.kernels.view import KVView, RopeSpec
from reverie.world.actions import DOOM_ACTIONS, GAME_TICS_PER_SECOND, ActionSpace


SAMPLERS = ("renoise", "euler")
ACTION_BINDINGS = ("per_frame", "aggregate")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """What a model declares about itself; the engine and memory size everything from it.

    Attributes:
        name: registry name.
        action_space: the controls the model is conditioned on, per frame (`world.actions.ActionSpace`:
            named buttons, continuous axes, and whether the model takes an index or a vector).
        frame_shape: `(H, W, 3)` of the uint8 frames it produces.
        tokens_per_frame: tokens each frame contributes to every layer's cache.
        latent_shape: `(tokens_per_frame, channels)` of one frame's latent.
        layers, heads, head_dim: attention geometry of the cached layers.
        chunk_frames: latent frames generated per step of the loop (1 = per-frame actions when
            `frames_per_latent` is 1).
        frames_per_latent: video frames one latent frame stands for (temporal compression, e.g. 4 for a
            causal video VAE): `encode` takes `T * frames_per_latent` frames and returns `T` latents,
            `decode` the reverse. Memory, budgets and positions count latent frames.
        action_binding: how the per-frame actions of a chunk reach the model when a latent covers several
            frames: "per_frame" (all `frames_per_chunk` of them) or "aggregate" (one per latent frame: the
            buttons held in any of its frames, opposing ones cancelling, and the mean of each axis).
        frame_context: how many of the latest frames' clean latents the model takes directly, besides
            memory (frame stacking; 0 = none). The engine keeps them per session and passes them as
            `context` to `denoise` and `commit`; models with 0 are never passed `context`.
        prompt_tokens: tokens of the session's prompt, which the model cross-attends to (0 = none). The
            engine asks `prompt(seed_frame)` once when a session starts and passes the result as `prompt`
            to `denoise` and `commit`; models with 0 are never passed `prompt`.
        prompt_cache_bytes: bytes the model keeps for each session's prompt beside the prompt itself (its
            cross-attention's keys and values, their index), which the session is charged for.
        steps: noise levels in (0, 1] visited by the sampler, highest first (flow matching:
            `x_t = (1 - t) * x0 + t * noise`).
        sampler: how the sampler moves between `steps`: "renoise" (a fresh noise draw at every level) or
            "euler" (the deterministic probability-flow step, as EDM and DDIM sample; see
            `engine.sampler.next_sample`).
        context_noise: noise level of the commit pass (0 = clean).
        rope: temporal RoPE applied at read time.
        kv_dtype: dtype of cached keys/values at full precision.
        has_pose_head: whether `commit` returns per-frame pose deltas (dx, dy, dangle).
        tics_per_step: real-game tics one generated frame stands for (the frame skip of its training
            data); side-by-side play and fidelity benches step the real game this many tics per action,
            and `real_time_fps` (35 / tics_per_step) is the frame rate at which it plays at the game's speed.
        temporal_span: temporal positions the model was trained on (its longest training episode), or
            None if unknown. Bounded position policies keep cached frames at their true distance up to
            this span and only collapse older ones (a short span puts the sink "nearer" than it is).
    """

    name: str
    action_space: ActionSpace = DOOM_ACTIONS
    frame_shape: tuple[int, int, int]
    tokens_per_frame: int
    latent_shape: tuple[int, int]
    layers: int
    heads: int
    head_dim: int
    chunk_frames: int = 1
    frames_per_latent: int = 1
    action_binding: str = "per_frame"
    frame_context: int = 0
    prompt_tokens: int = 0
    prompt_cache_bytes: int = 0
    steps: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
    sampler: str = "renoise"
    context_noise: float = 0.0
    rope: RopeSpec = field(default_factory=lambda: RopeSpec(dims=0))
    kv_dtype: torch.dtype = torch.float32
    has_pose_head: bool = False
    tics_per_step: int = 1
    temporal_span: int | None = None

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        if self.frames_per_latent < 1:
            raise ValueError("frames_per_latent must be >= 1")
        if self.action_binding not in ACTION_BINDINGS:
            raise ValueError(f"action_binding must be one of {ACTION_BINDINGS}, got '{self.action_binding}'")
        if self.tics_per_step < 1:
            raise ValueError("tics_per_step must be >= 1")
        if self.frame_context < 0 or self.prompt_tokens < 0 or self.prompt_cache_bytes < 0:
            raise ValueError("frame_context, prompt_tokens and prompt_cache_bytes must be >= 0")
        if self.temporal_span is not None and self.temporal_span <= self.chunk_frames:
            raise ValueError("temporal_span must exceed chunk_frames")
        if not self.steps or any(not 0.0 < s <= 1.0 for s in self.steps):
            raise ValueError(f"steps must be noise levels in (0, 1], got {self.steps}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got '{self.sampler}'")
        if list(self.steps) != sorted(self.steps, reverse=True):
            raise ValueError("steps must go from the highest noise level to the lowest")
        if self.latent_shape[0] != self.tokens_per_frame:
            raise ValueError("latent_shape[0] must equal tokens_per_frame")
        if self.rope.dims > self.head_dim:
            raise ValueError("rope.dims cannot exceed head_dim")

    @property
    def frames_per_chunk(self) -> int:
        """Video frames (and per-frame actions) one step of the loop makes."""
        return self.chunk_frames * self.frames_per_latent

    @property
    def actions_per_chunk(self) -> int:
        """Actions `denoise` / `commit` receive per chunk (see `action_binding`)."""
        return self.chunk_frames if self.action_binding == "aggregate" else self.frames_per_chunk

    def bind_actions(self, values: list) -> torch.Tensor:
        """A chunk's `frames_per_chunk` per-frame action values -> what the model takes (CPU tensor)."""
        space = self.action_space
        if self.action_binding == "aggregate" and self.frames_per_latent > 1:
            f = self.frames_per_latent
            values = [space.aggregate(values[i:i + f]) for i in range(0, len(values), f)]
        return space.tensor(values)

    @property
    def kv_bytes_per_frame(self) -> int:
        """Bytes of full-precision K+V one (latent) frame adds across all layers."""
        itemsize = torch.empty((), dtype=self.kv_dtype).element_size()
        return 2 * self.layers * self.heads * self.head_dim * self.tokens_per_frame * itemsize

    @property
    def real_time_fps(self) -> float:
        """Frames per second at which the model's world runs at the real game's speed."""
        return GAME_TICS_PER_SECOND / self.tics_per_step


@runtime_checkable
class AttentionMemory(Protocol):
    """The memory edge a model sees during `denoise` and `commit` (implemented by `memory`).

    `q`, `k`, `v` are the current chunk's `[H, n, D]` projections, keys before temporal RoPE.
    """

    def view(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> KVView:
        """Read-only view of this layer's visible cache plus the chunk itself (scratch)."""

    def commit(self, layer: int, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor) -> None:
        """Keep the clean chunk's keys/values (called by the commit pass only)."""


class WorldModel(ABC):
    """An action-conditioned autoregressive video-diffusion model.

    Subclasses set `spec` and implement the four methods. They must not keep per-session state: all of a
    session's history lives in the memory passed to `denoise`/`commit`, so one model serves many sessions.
    """

    spec: ModelSpec

    @abstractmethod
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `[T * frames_per_latent, H, W, 3]` frames -> float latents `[T, tokens_per_frame, channels]`."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents `[T, tokens_per_frame, channels]` -> uint8 frames `[T * frames_per_latent, H, W, 3]`."""

    @abstractmethod
    def denoise(self, x: torch.Tensor, t: float, actions: torch.Tensor, memory: AttentionMemory,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """One denoising step for the current chunk.

        Args:
            x: noisy latents `[chunk_frames, tokens_per_frame, channels]` at noise level `t`.
            t: the noise level (one of `spec.steps`).
            actions: `spec.actions_per_chunk` of them (one per video frame, or one per latent frame with
                `action_binding="aggregate"`), as `spec.bind_actions` makes them: int64 `[n]` indices for
                an index space, float32 `[n, dim]` (buttons 0/1, then axes) for a vector space.
            memory: the session's memory; `view` is called once per layer, `commit` never.
            context: only when `spec.frame_context > 0`: clean latents `[n, tokens_per_frame, channels]`
                of the frames just before the chunk, oldest first (`n <= frame_context`; None before the
                first frame of a session).

        Returns:
            the model's estimate of the clean latents, same shape as `x`.
        """

    @abstractmethod
    def commit(self, x0: torch.Tensor, actions: torch.Tensor, memory: AttentionMemory,
               context: torch.Tensor | None = None) -> torch.Tensor | None:
        """The clean pass: attends like `denoise` at noise `spec.context_noise` and calls
        `memory.commit` once per layer; `context` and `prompt` as in `denoise`. Returns `[chunk_frames, 3]` pose deltas
        if the model has a pose head, else None."""

    def prompt(self, seed_frame: torch.Tensor) -> torch.Tensor | None:
        """The session's prompt from its seed frame (uint8 `[H, W, 3]`): `[prompt_tokens, channels]` for a
        model that cross-attends to an image prompt (`spec.prompt_tokens > 0`), else None (the default)."""
        return None

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")
