"""The default neural game: `DiTWorldModel` (the `WorldModel` contract around `DiTNet`) and `build`.

Latents are the frame's non-overlapping `patch x patch` RGB patches scaled to [-1, 1]
(`[T, tokens_per_frame, patch * patch * 3]`), so `encode`/`decode` are exact reshapes and the network
works directly in pixel space.

With a renderer (`world.dit.renderer`, bundled in the same checkpoint under `renderer.*`), each frame is
made in two stages: the DiT makes its one-step guess through memory once per frame (the first sampler step),
then the renderer denoises the frame in pixel space over `spec.steps` (EDM; by default starting from the
guess plus noise, see `world.dit.renderer`), conditioned on that guess, the DiT's warped previous frame and
the two previous frames; the DiT's commit pass then caches the
renderer's frame. Without one, the DiT's guess is the frame.
"""

from __future__ import annotations

from dataclasses import replace

from pathlib import Path

import torch

from reverie.kernels.view import RopeSpec
from reverie.world.checkpoint import CheckpointError, load_state, read_metadata
from reverie.world.contract import AttentionMemory, ModelSpec, WorldModel
from reverie.world.dit.config import DiTConfig, model_config
from reverie.world.dit.network import DiTNet
from reverie.world.dit.patches import patchify, to_latents, to_pixels, unpatchify
from reverie.world.dit.renderer import Renderer, RendererConfig, sampling_sigmas, sigma_to_t, t_to_sigma

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "default.safetensors"


class DiTWorldModel(WorldModel):
    """Block-causal DiT over frame patches, conditioned per frame on the action and the noise level.

    Attributes:
        net: the weights (`DiTNet`); cfg: its `DiTConfig`; meta: checkpoint metadata (empty if random).
    """

    def __init__(self, net: DiTNet, *, name: str = "default", steps: tuple[float, ...] | None = None,
                 meta: dict | None = None, renderer: Renderer | None = None):
        self.net = net.eval().requires_grad_(False)
        self.cfg: DiTConfig = net.cfg
        self.meta = dict(meta or {})
        self.renderer = None if renderer is None else renderer.eval().requires_grad_(False)
        cfg = self.cfg
        extra = {"steps": tuple(steps)} if steps else {}
        frame_context = 1 if cfg.prev_frame else 0
        if renderer is not None:
            if not cfg.prev_frame:
                raise ValueError("a renderer needs a prev_frame DiT (it takes the DiT's warped previous frame)")
            frame_context = 2
            extra = {"steps": tuple(steps) if steps else tuple(sigma_to_t(s) for s in sampling_sigmas(renderer.cfg)),
                     "sampler": renderer.cfg.sampler}
        self._guess: tuple | None = None  # (memory, frames committed, DiT guess image, warped previous image)
        self.spec = ModelSpec(
            name=name, frame_shape=(cfg.frame_h, cfg.frame_w, 3), tokens_per_frame=cfg.tokens_per_frame,
            latent_shape=(cfg.tokens_per_frame, cfg.patch_dim), layers=cfg.layers, heads=cfg.heads,
            head_dim=cfg.head_dim, rope=RopeSpec(dims=cfg.temporal_rope, theta=cfg.temporal_theta),
            has_pose_head=cfg.pose_head, frame_context=frame_context,
            tics_per_step=int(self.meta.get("tics_per_step", 1)),
            temporal_span=self.meta.get("longest_episode") or (self.meta.get("train") or {}).get("episode_steps"),
            **extra)
        from reverie.kernels import attend

        self._attend = attend
        self._tables: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def _table(self, t: float):
        """adaLN modulations for noise level `t` and every action, computed once per level."""
        key = float(t)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = self.net.condition_table(key)
        return table

    # -- pixels <-> latents ---------------------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 `[T, H, W, 3]` -> float32 `[T, tokens_per_frame, patch * patch * 3]` in [-1, 1]."""
        return patchify(frames, self.cfg.patch)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """`[T, tokens_per_frame, patch * patch * 3]` -> uint8 `[T, H, W, 3]` (clamped, rounded)."""
        return unpatchify(latents, self.cfg.patch, self.cfg.frame_h, self.cfg.frame_w)

    # -- the loop ---------------------------------------------------------------------------------------
    def _prev(self, frames: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor | None:
        """Each of a chunk's frames' previous clean latent: the context for the first, then the chunk's
        own frames (known on the commit pass); zeros before a session's first frame."""
        if not self.cfg.prev_frame:
            return None
        first = torch.zeros_like(frames[:1]) if context is None else context[-1:].to(frames.dtype)
        return torch.cat((first, frames[:-1])) if len(frames) > 1 else first

    @torch.inference_mode()
    def denoise(self, x: torch.Tensor, t: float, actions: torch.Tensor, memory: AttentionMemory,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """See `WorldModel.denoise`: x `[C, T, P]` at noise `t` -> clean estimate `[C, T, P]`."""
        if self.cfg.prev_frame and len(x) > 1:
            raise ValueError("a prev_frame model denoises one frame per chunk")
        x = x.float()
        if self.renderer is None:
            x0, _, _ = self.net.step(x, actions.long(), self._table(t), memory, self._attend, commit=False,
                                     prev=self._prev(x, context))
            return x0
        return self._render(x, t, actions.long(), memory, context)

    def _images(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents `[C, T, P]` -> images `[C, 3, H, W]` (the renderer's layout)."""
        return to_pixels(latents, self.cfg.patch, self.cfg.frame_h, self.cfg.frame_w).movedim(-1, -3)

    def _dit_guess(self, x: torch.Tensor, t: float, actions: torch.Tensor, memory: AttentionMemory,
                   context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The DiT's one-step guess and its warped previous frame (images) for the chunk being sampled.

        Made once per frame, at the sampler's first level, from the noise `x / t` (the DiT's own top level,
        t = 1), and kept for that frame's later levels: the chunk is the same while the memory has committed
        nothing new. A model object is shared by sessions, but the sampler runs a chunk's levels back to back."""
        key = (id(memory), getattr(memory, "frames_committed", None))
        if self._guess is None or t >= self.spec.steps[0] or self._guess[:2] != key:
            guess, _, moved = self.net.step(x / t, actions, self._table(1.0), memory, self._attend, commit=False,
                                            prev=self._prev(x, context))
            self._guess = (*key, self._images(guess), self._images(moved))
        return self._guess[2], self._guess[3]

    def _render(self, x: torch.Tensor, t: float, actions: torch.Tensor, memory: AttentionMemory,
                context: torch.Tensor | None) -> torch.Tensor:
        """One renderer step: the flow-matching sample `x` at `t` -> the clean latents (EDM `D(x; sigma)`)."""
        guess, warped = self._dit_guess(x, t, actions, memory, context)
        n = len(x)
        if context is None:
            prev1 = prev2 = torch.zeros_like(guess)
        else:
            prev1 = self._images(context[-1:].float()).expand(n, -1, -1, -1)
            prev2 = self._images(context[-2:-1].float()).expand(n, -1, -1, -1) if len(context) > 1 else prev1
        sigma = t_to_sigma(t)
        rcfg = self.renderer.cfg
        if rcfg.start == "guess" and t >= self.spec.steps[0]:  # the first level: the guess plus that noise
            x_sigma = guess + sigma * self._images(x / t)
        else:
            x_sigma = self._images(x) / (1.0 - t)
        full = lambda v: torch.full((n,), float(v), device=x.device)  # noqa: E731
        x0, _ = self.renderer(x_sigma, full(sigma), guess, warped, prev1, prev2, full(rcfg.play_context_sigma),
                              actions)
        return to_latents(x0.movedim(-3, -1), self.cfg.patch)

    @torch.inference_mode()
    def commit(self, x0: torch.Tensor, actions: torch.Tensor, memory: AttentionMemory,
               context: torch.Tensor | None = None) -> torch.Tensor | None:
        """See `WorldModel.commit`: writes the clean chunk's K/V.

        Returns pose deltas `[C, 3]` = (forward, left, dangle degrees), motion since the previous frame in
        that frame's heading (egocentric; see `world.dit.data.pose_deltas`), or None without a pose head.
        """
        x0 = x0.float()
        _, pose, _ = self.net.step(x0, actions.long(), self._table(self.spec.context_noise), memory,
                                   self._attend, commit=True, prev=self._prev(x0, context))
        if pose is None:
            return None
        return pose * torch.tensor(self.cfg.pose_scale, dtype=pose.dtype)


def load_net(path: str | Path) -> tuple[DiTNet, dict]:
    """Build a `DiTNet` from a checkpoint (config read from the checkpoint's metadata)."""
    net, _, meta = load_checkpoint(path)
    return net, meta


def load_checkpoint(path: str | Path) -> tuple[DiTNet, Renderer | None, dict]:
    """The DiT, the renderer bundled with it (None when the checkpoint holds none; its tensors are
    `renderer.*`, its config `meta["renderer"]`) and the metadata of a checkpoint."""
    meta = read_metadata(path)
    if "config" not in meta:
        raise CheckpointError(f"checkpoint {path} has no model config in its metadata")
    try:
        cfg = DiTConfig.from_dict(meta["config"])
        rcfg = RendererConfig.from_dict(meta["renderer"]) if meta.get("renderer") else None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid model config: {exc}") from exc
    if meta.get("config_hash") not in (None, cfg.hash()):
        raise CheckpointError(f"checkpoint {path}: config hash {meta.get('config_hash')} does not match its "
                              f"config ({cfg.hash()})")
    net = DiTNet(cfg)
    renderer = None if rcfg is None else Renderer(rcfg)
    expected = {n: t.shape for n, t in net.state_dict().items()}
    if renderer is not None:
        expected.update({f"{RENDERER_PREFIX}{n}": t.shape for n, t in renderer.state_dict().items()})
    state = load_state(path, expected)
    net.load_state_dict({n: t for n, t in state.items() if not n.startswith(RENDERER_PREFIX)})
    if renderer is not None:
        renderer.load_state_dict({n[len(RENDERER_PREFIX):]: t for n, t in state.items() if n.startswith(RENDERER_PREFIX)})
    return net, renderer, meta


RENDERER_PREFIX = "renderer."


def _composition(resample: str | None, padding: str | None) -> dict:
    """The copy-path fields a caller overrides at play time (`DiTConfig.prev_resample`, `prev_padding`)."""
    given = {"prev_resample": resample, "prev_padding": padding}
    return {k: v for k, v in given.items() if v is not None}


def build(*, pretrained: bool = True, checkpoint: str | Path | None = None, config: str | DiTConfig = "default",
          steps: tuple[float, ...] | None = None, seed: int = 0, name: str = "default",
          use_renderer: bool = True, resample: str | None = None, padding: str | None = None) -> DiTWorldModel:
    """The registry factory for `"default"`.

    Args:
        pretrained: load the weights bundled in the package (`world/dit/weights/default.safetensors`).
        checkpoint: load this safetensors file instead (its config comes from its metadata).
        config: preset name or `DiTConfig` for random weights (`pretrained=False`, no checkpoint).
        steps: override the sampler's noise levels (default: the checkpoint's `sampler_steps`, else
            `ModelSpec`'s `(1.0, 0.75, 0.5, 0.25)`).
        seed: seeds the random initialisation when no weights are loaded.
        use_renderer: sample with the checkpoint's renderer when it has one (False: the DiT alone, one step).
        resample: how the copy path samples the previous frame at play time ("bilinear", "bicubic",
            "nearest"; default: the checkpoint's `DiTConfig.prev_resample`).
        padding: what the copy path shows beyond the previous frame's edge at play time ("border",
            "reflection"; default: the checkpoint's `DiTConfig.prev_padding`).
    Raises:
        CheckpointError: no bundled weights (with `pretrained=True`), or a missing/corrupt/mismatched file.
    """
    if checkpoint is None and pretrained:
        if not DEFAULT_CHECKPOINT.is_file():
            raise CheckpointError(
                f"no trained default model is bundled with this install ({DEFAULT_CHECKPOINT} is missing); "
                "train one with `reverie train --config default` and pass `--checkpoint`, or use random "
                "weights with load_model('default', pretrained=False)")
        checkpoint = DEFAULT_CHECKPOINT
    if checkpoint is not None:
        net, renderer, meta = load_checkpoint(checkpoint)
        meta["checkpoint_path"] = str(checkpoint)
        play = _composition(resample, padding)
        if play:  # a play-time choice; recordings pin it through the config hash
            net.cfg = replace(net.cfg, **play)
            meta.update(config=net.cfg.to_dict(), config_hash=net.cfg.hash())
        if steps is None and meta.get("sampler_steps"):
            steps = tuple(float(s) for s in meta["sampler_steps"])
        if renderer is not None and not use_renderer:
            renderer = None
            steps = steps or tuple(float(s) for s in meta.get("dit_sampler_steps", (1.0,)))
        return DiTWorldModel(net, name=name, steps=steps, meta=meta, renderer=renderer)
    cfg = model_config(config) if isinstance(config, str) else config
    cfg = replace(cfg, **_composition(resample, padding))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DiTNet(cfg)
    return DiTWorldModel(net, name=name, steps=steps, meta={"config": cfg.to_dict(), "config_hash": cfg.hash()})
