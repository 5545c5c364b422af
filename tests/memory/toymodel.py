"""A minimal test-only WorldModel whose output depends on what it attends to through the memory API."""

from __future__ import annotations

import torch

from reverie.kernels import attend
from reverie.kernels.view import RopeSpec
from reverie.world.contract import ModelSpec, WorldModel


class ToyModel(WorldModel):
    """8x8 frames, 2x2 patches of 4x4 pixels (4 tokens of 48 channels), 2 attention layers."""

    def __init__(self, seed: int = 0, chunk_frames: int = 1) -> None:
        self.spec = ModelSpec(name="memtest-toy", frame_shape=(8, 8, 3), tokens_per_frame=4, latent_shape=(4, 48),
                              layers=2, heads=2, head_dim=8, chunk_frames=chunk_frames, rope=RopeSpec(dims=4),
                              steps=(1.0, 0.5))
        g = torch.Generator().manual_seed(seed)
        w = lambda *s: torch.randn(*s, generator=g) / s[0] ** 0.5  # noqa: E731
        self.w_in, self.w_out = w(48, 16), w(16, 48)
        self.act = torch.randn(27, 16, generator=g) * 0.3
        self.wq, self.wk, self.wv, self.wo = (torch.stack([w(16, 16) for _ in range(2)]) for _ in range(4))

    def encode(self, frames):
        x = frames.float() / 127.5 - 1.0
        t = x.shape[0]
        return x.reshape(t, 2, 4, 2, 4, 3).permute(0, 1, 3, 2, 4, 5).reshape(t, 4, 48)

    def decode(self, latents):
        t = latents.shape[0]
        x = latents.reshape(t, 2, 2, 4, 4, 3).permute(0, 1, 3, 2, 4, 5).reshape(t, 8, 8, 3)
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def _forward(self, x, actions, memory, commit):
        c = x.shape[0]
        h = (x @ self.w_in + self.act[actions][:, None]).reshape(c * 4, 16)
        for layer in range(2):
            q, k, v = ((h @ w[layer]).reshape(c * 4, 2, 8).transpose(0, 1) for w in (self.wq, self.wk, self.wv))
            o = attend(q, memory.view(layer, q, k, v))
            if commit:
                memory.commit(layer, k, v, q)
            h = h + o.transpose(0, 1).reshape(c * 4, 16) @ self.wo[layer]
        return torch.tanh(h @ self.w_out).reshape(c, 4, 48)

    def denoise(self, x, t, actions, memory):
        return self._forward(x, actions, memory, commit=False)

    def commit(self, x0, actions, memory):
        self._forward(x0, actions, memory, commit=True)
        return None


def register() -> None:
    from reverie.world.registry import register as reg

    reg("memtest-toy", lambda **kw: ToyModel(**kw))
