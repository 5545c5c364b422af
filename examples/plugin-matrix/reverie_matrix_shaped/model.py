"""A world model shaped like Matrix-Game 2.0, at toy size with random (seeded) weights.

What it has of MG2.0's shape, so that reverie's engine, memory, server and client are exercised the way
such a model uses them:

* **controls**: keyboard W/S/A/D as multi-hot buttons (opposing pairs cancel) plus a 2-D camera move read
  from the mouse (`camera_x`, `camera_y`); the keyboard and the mouse have their own embeddings;
* **temporal compression**: a stand-in for a causal video VAE turns 4 frames into 1 latent frame (the
  mean of the 4 frames at half resolution per 8x8 patch, 48 channels; the decoder upsamples it and
  spreads it over the 4 frames with a small ramp). Memory, budgets and positions count latent frames;
* **chunks**: 3 latent frames per chunk (12 video frames), all 12 per-frame actions given to the model
  (`action_binding="per_frame"`; it folds each latent's 4 actions into one embedding);
* **attention**: a causal DiT over latent time (2 blocks, 4 heads) whose cache is reverie's memory, with
  RoPE over latent time; MG2.0 keeps a sink and a local window of 6 latent frames, which is reverie's
  `deep-sink` policy (`reverie play --model matrix-shaped --policy deep-sink`);
* **an image prompt**: every block cross-attends to the session's start frame (60 tokens, its latent
  frame; `ModelSpec.prompt_tokens`, `prompt()`), which the engine keeps per session and passes as `prompt`;
  in full, or with `build(cross="ann")` restricted per query to the prompt tokens its index finds
  (AnnCA, `reverie.memory.ann_cross`);
* **few-step sampling**: 4 levels with a fresh noise draw at each (Self-Forcing's sampler).

Its random weights are set so the untrained model copies what it attends to (a token's queries and keys
carry its place and favour clean keys over noisy ones, and the value and output projections start near the identity on the latent channels), so
its frames resemble its history rather than noise; nothing here is trained.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import nn

from reverie.kernels import attend
from reverie.kernels.view import RopeSpec
from reverie.memory.ann_cross import CrossAnnConfig, PromptAttention, prompt_index_bytes
from reverie.world.actions import ActionSpace, Axis
from reverie.world.contract import ModelSpec, WorldModel

H, W, P = 48, 80, 8                      # frames, patch
GH, GW = H // P, W // P
TOKENS = GH * GW                          # 60 tokens per latent frame
FRAMES_PER_LATENT, CHUNK = 4, 3
HALF = P // 2
CHANNELS = HALF * HALF * 3                # 48: a patch at half resolution

CONTROLS = ActionSpace(
    buttons=("forward", "back", "left", "right"),
    axes=(Axis("camera_x", -1.0, 1.0, source="mouse_x", scale=0.02),
          Axis("camera_y", -1.0, 1.0, source="mouse_y", scale=-0.02)),
    opposing=(("forward", "back"), ("left", "right")),
    keys=(("forward", ("w",)), ("back", ("s",)), ("left", ("a",)), ("right", ("d",))))


class MatrixShapedWorld(WorldModel):
    """Keys + mouse, 4 frames per latent, 3 latents per chunk, a 2-block causal DiT over latent time."""

    def __init__(self, width: int = 128, heads: int = 4, layers: int = 2, seed: int = 0,
                 cross_ann: CrossAnnConfig | None = None):
        self.cross_ann = cross_ann
        self._prompts: dict[int, tuple[weakref.ref, list[PromptAttention]]] = {}
        gen = torch.Generator().manual_seed(seed)
        head_dim = width // heads
        self.spec = ModelSpec(name="matrix-shaped", action_space=CONTROLS, frame_shape=(H, W, 3),
                              tokens_per_frame=TOKENS, latent_shape=(TOKENS, CHANNELS), layers=layers,
                              heads=heads, head_dim=head_dim, chunk_frames=CHUNK,
                              frames_per_latent=FRAMES_PER_LATENT, action_binding="per_frame",
                              steps=(1.0, 0.75, 0.5, 0.25), sampler="renoise", rope=RopeSpec(dims=8),
                              prompt_tokens=TOKENS, prompt_cache_bytes=self._prompt_bytes(width, heads, layers, cross_ann),
                              tics_per_step=2, temporal_span=4096)
        self.width, self.heads, self.layers = width, heads, layers

        def rnd(*shape, scale):
            return torch.randn(*shape, generator=gen) * scale

        eye = torch.zeros(CHANNELS, width)
        eye[:, :CHANNELS] = torch.eye(CHANNELS)
        self.w_in = eye + rnd(CHANNELS, width, scale=0.002)
        self.w_out = eye.T.clone() + rnd(width, CHANNELS, scale=0.002)
        self.pos = rnd(TOKENS, width, scale=0.02)                                   # spatial position
        self.pos_qk = rnd(TOKENS, width, scale=1.5)       # ... in queries and keys: a token reads its place
        self.clean = rnd(width, scale=1.0)                # ... from clean keys more than from noisy ones
        self.keyboard = rnd(FRAMES_PER_LATENT * 4, width, scale=0.05)               # 4 frames x 4 keys
        self.mouse = rnd(FRAMES_PER_LATENT * 2, width, scale=0.05)                  # 4 frames x 2 axes
        self.level = rnd(16, width, scale=0.05)                                     # Fourier features of t
        self.blocks = []
        for _ in range(layers):
            qk = rnd(width, 2 * width, scale=width ** -0.5)
            v = torch.eye(width) + rnd(width, width, scale=0.002)
            o = torch.eye(width) + rnd(width, width, scale=0.002)
            self.blocks.append((qk, v, o, rnd(width, 2 * width, scale=0.02), rnd(2 * width, width, scale=0.002)))
        self.cross = [(rnd(width, width, scale=width ** -0.5), rnd(width, 2 * width, scale=width ** -0.5),
                       rnd(width, width, scale=0.002)) for _ in range(layers)]  # q; k, v of the prompt; out
        self.ramp = torch.linspace(-0.03, 0.03, FRAMES_PER_LATENT)                  # the decoder's 4 frames

    @staticmethod
    def _prompt_bytes(width: int, heads: int, layers: int, ann: CrossAnnConfig | None) -> int:
        """What `_prompt_attention` keeps per prompt: every layer's float32 keys and values, and with AnnCA their index."""
        return layers * (2 * TOKENS * width * 4 + prompt_index_bytes(heads, width // heads, TOKENS, ann))

    # --- the stand-in temporal autoencoder ---------------------------------------------------------------
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.shape[0] // FRAMES_PER_LATENT
        x = frames.to(torch.float32).div(127.5).sub(1.0).reshape(t, FRAMES_PER_LATENT, H, W, 3).mean(1)
        x = nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 2)                    # [t, 3, H/2, W/2]
        x = x.reshape(t, 3, GH, HALF, GW, HALF).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(t, TOKENS, CHANNELS)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        t = latents.shape[0]
        x = latents.reshape(t, GH, GW, HALF, HALF, 3).permute(0, 5, 1, 3, 2, 4).reshape(t, 3, H // 2, W // 2)
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest").permute(0, 2, 3, 1)
        x = x[:, None] + self.ramp.to(x)[None, :, None, None, None]
        return x.reshape(t * FRAMES_PER_LATENT, H, W, 3).clamp(-1, 1).add(1.0).mul(127.5).round().to(torch.uint8)

    # --- the causal DiT ----------------------------------------------------------------------------------
    def _condition(self, t: float, actions: torch.Tensor) -> torch.Tensor:
        """Per latent frame `[CHUNK, width]`: noise level + keyboard + mouse of its 4 frames."""
        per_latent = actions.float().reshape(-1, FRAMES_PER_LATENT, actions.shape[-1])
        keys = per_latent[..., :4].reshape(per_latent.shape[0], -1) @ self.keyboard
        mouse = per_latent[..., 4:].reshape(per_latent.shape[0], -1) @ self.mouse
        freqs = torch.arange(8, dtype=torch.float32)
        fourier = torch.cat([torch.sin(t * math.pi * 2 ** freqs), torch.cos(t * math.pi * 2 ** freqs)])
        return keys + mouse + fourier @ self.level

    def prompt(self, seed_frame: torch.Tensor) -> torch.Tensor:
        """The image prompt: the start frame's latent frame, `[TOKENS, CHANNELS]`."""
        return self.encode(seed_frame[None].expand(FRAMES_PER_LATENT, *seed_frame.shape))[0]

    def _prompt_attention(self, prompt: torch.Tensor) -> list[PromptAttention]:
        """Per layer, the cross-attention to `prompt` (its keys, values and, with AnnCA, their codes), made
        the first time a prompt is seen and kept while the session holds it."""
        key = id(prompt)
        held = self._prompts.get(key)
        if held is not None and held[0]() is prompt:
            return held[1]
        for stale in [k for k, (ref, _) in self._prompts.items() if ref() is None]:
            del self._prompts[stale]
        p = prompt @ self.w_in + self.pos
        layers = []
        for _, wkv, _ in self.cross:
            k, v = (p @ wkv).reshape(p.shape[0], 2, self.heads, -1).permute(1, 2, 0, 3)
            layers.append(PromptAttention(k, v, self.cross_ann))
        self._prompts[key] = (weakref.ref(prompt), layers)
        return layers

    def _cross(self, h: torch.Tensor, prompt: torch.Tensor, layer: int) -> torch.Tensor:
        """Cross-attention of every token to the prompt's tokens: in full, or to those its index finds
        (AnnCA, `build(cross="ann")`)."""
        wq, _, wo = self.cross[layer]
        q = (h @ wq).reshape(-1, self.heads, self.width // self.heads).transpose(0, 1)
        out = self._prompt_attention(prompt)[layer](q)
        return out.transpose(0, 1).reshape(-1, self.width) @ wo

    def _forward(self, x: torch.Tensor, t: float, actions: torch.Tensor, memory, commit: bool,
                 prompt: torch.Tensor) -> torch.Tensor:
        c = x.shape[0]
        h = (x @ self.w_in + self.pos + self._condition(t, actions)[:, None, :]).reshape(c * TOKENS, self.width)
        for layer, (qk, v_w, o_w, up, down) in enumerate(self.blocks):
            n = nn.functional.layer_norm(h, (self.width,))
            place = self.pos_qk.repeat(c, 1)
            q, k = (n @ qk).reshape(c * TOKENS, 2, self.width).add(place[:, None]).unbind(1)
            q, k = q + self.clean, k + (1 - 2 * t) * self.clean
            q, k = (z.reshape(c * TOKENS, self.heads, -1).transpose(0, 1) for z in (q, k))
            v = (h @ v_w).reshape(c * TOKENS, self.heads, -1).permute(1, 0, 2)
            out = attend(q, memory.view(layer, q, k, v))
            if commit:
                memory.commit(layer, k, v, q)
            h = out.permute(1, 0, 2).reshape(c * TOKENS, self.width) @ o_w
            h = h + self._cross(h, prompt, layer)
            h = h + torch.tanh(nn.functional.layer_norm(h, (self.width,)) @ up) @ down
        return (h @ self.w_out).reshape(c, TOKENS, CHANNELS).clamp(-1, 1)

    @torch.inference_mode()
    def denoise(self, x, t, actions, memory, prompt=None):
        return self._forward(x, float(t), actions, memory, commit=False, prompt=prompt)

    @torch.inference_mode()
    def commit(self, x0, actions, memory, prompt=None):
        self._forward(x0, self.spec.context_noise, actions, memory, commit=True, prompt=prompt)
        return None

    def seed_frame(self):
        """A start frame when the player brings none: a sky over a floor with a few pillars."""
        y, x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        sky = torch.stack([90 + y * 2, 140 + y, torch.full_like(y, 220)], -1)
        floor = torch.stack([60 + y, 110 + y, 50 + 0 * y], -1)
        frame = torch.where((y < H // 2)[..., None], sky, floor)
        pillars = ((x // 10) % 3 == 0) & (y > H // 4)
        frame[pillars] = torch.tensor([150, 120, 90])
        return frame.clamp(0, 255).to(torch.uint8).numpy()


def build(seed: int = 0, cross: str = "full", cross_probes: int = 2, cross_cluster_size: int = 8,
          **_ignored) -> MatrixShapedWorld:
    """The entry-point factory: `load_model("matrix-shaped")`; `cross="ann"` restricts each query's
    cross-attention to the prompt tokens of its `cross_probes` best clusters of about `cross_cluster_size`
    (AnnCA, `reverie.memory.ann_cross`; `reverie bench cross`)."""
    if cross not in ("full", "ann"):
        raise ValueError(f"cross must be 'full' or 'ann', got '{cross}'")
    ann = CrossAnnConfig(probes=cross_probes, cluster_size=cross_cluster_size) if cross == "ann" else None
    return MatrixShapedWorld(seed=seed, cross_ann=ann)
