"""A tiny action-conditioned world model that plugs into reverie's loop through the `WorldModel` contract.

It is deliberately small and random-weight (seeded): one attention layer over 8x8 RGB patches, conditioned
on the action and the noise level. What it shows is the contract: `encode`/`decode` between pixels and
latents, `denoise` attending through `memory.view` + `kernels.attend`, and `commit` keeping the clean
chunk's keys/values with `memory.commit`. Any model written this way runs in `reverie play`,
`reverie bench model`, `reverie rollout` and under every memory policy.
"""

from __future__ import annotations

import torch
from torch import nn

from reverie.kernels import attend
from reverie.kernels.view import RopeSpec
from reverie.world.contract import ModelSpec, WorldModel

H, W, P = 48, 64, 8
TOKENS, CHANNELS = (H // P) * (W // P), P * P * 3


class TinyAttentionWorld(WorldModel):
    """One attention layer: x0 = x + out(attend(q, memory.view(...))), conditioned additively."""

    def __init__(self, width: int = 64, heads: int = 2, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.spec = ModelSpec(name="example-tiny", frame_shape=(H, W, 3), tokens_per_frame=TOKENS,
                              latent_shape=(TOKENS, CHANNELS), layers=1, heads=heads, head_dim=width // heads,
                              rope=RopeSpec(dims=8))
        self.width, self.heads = width, heads

        def init(*shape, scale):
            return torch.randn(*shape, generator=gen) * scale

        self.w_in = init(CHANNELS, width, scale=CHANNELS ** -0.5)
        self.w_qkv = init(width, 3 * width, scale=width ** -0.5)
        self.w_out = init(width, CHANNELS, scale=0.01)
        self.action = init(len(self.spec.action_space), width, scale=0.1)
        self.level = init(2, width, scale=0.1)  # noise level embedded as a + b * t

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(torch.float32) / 127.5 - 1.0
        x = x.reshape(-1, H // P, P, W // P, P, 3).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, TOKENS, CHANNELS)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        x = latents.reshape(-1, H // P, W // P, P, P, 3).permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, 3)
        return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)

    def _forward(self, x: torch.Tensor, t: float, actions: torch.Tensor, memory, commit: bool) -> torch.Tensor:
        c = x.shape[0]
        cond = self.action[actions] + self.level[0] + t * self.level[1]            # [C, width]
        h = torch.tanh(x @ self.w_in + cond[:, None, :]).reshape(c * TOKENS, self.width)
        q, k, v = (h @ self.w_qkv).reshape(c * TOKENS, 3, self.heads, -1).permute(1, 2, 0, 3)  # [H, N, hd]
        out = attend(q, memory.view(0, q, k, v))
        if commit:
            memory.commit(0, k, v, q)
        out = out.permute(1, 0, 2).reshape(c, TOKENS, self.width)
        return x + nn.functional.tanh(out @ self.w_out)

    @torch.inference_mode()
    def denoise(self, x, t, actions, memory):
        return self._forward(x, float(t), actions, memory, commit=False)

    @torch.inference_mode()
    def commit(self, x0, actions, memory):
        self._forward(x0, self.spec.context_noise, actions, memory, commit=True)
        return None


def build(seed: int = 0, **_ignored) -> TinyAttentionWorld:
    """The entry-point factory: `load_model("example-tiny")`."""
    return TinyAttentionWorld(seed=seed)
