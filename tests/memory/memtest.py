"""Tiny geometries and a driver that runs the memory loop on random tensors (no model)."""

from __future__ import annotations

import pytest  # noqa: F401
import torch

from reverie.kernels import attend_ref

from reverie.kernels.view import RopeSpec
from reverie.world.contract import ModelSpec


def tiny_spec(*, layers=2, heads=2, head_dim=8, tokens_per_frame=4, chunk_frames=1, rope_dims=4,
              kv_dtype=torch.float32) -> ModelSpec:
    return ModelSpec(name="tiny-mem", frame_shape=(8, 8, 3), tokens_per_frame=tokens_per_frame,
                     latent_shape=(tokens_per_frame, 3), layers=layers, heads=heads, head_dim=head_dim,
                     chunk_frames=chunk_frames, rope=RopeSpec(dims=rope_dims), kv_dtype=kv_dtype)


def chunk_qkv(spec: ModelSpec, chunk: int, layer: int, seed: int = 0):
    """Deterministic random `q, k, v` `[H, n, D]` for (chunk, layer)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + chunk * 1009 + layer)
    n = spec.chunk_frames * spec.tokens_per_frame
    shape = (spec.heads, n, spec.head_dim)
    return tuple(torch.randn(shape, generator=g) for _ in range(3))


def run_chunk(mem, spec, chunk, seed=0, pose=None, events=(), after_commit=None, qkv=None, attend=False):
    """One chunk through the memory API; returns per layer `(q, view)` as seen by the commit pass, or
    `(q, view, out)` with `out = attend_ref(q, view)` taken before the commit when `attend` (a view
    aliases the cache buffers, so it is only valid until that layer's next commit)."""
    mem.begin_chunk(pose=pose, events=events)
    views = []
    for layer in range(spec.layers):
        q, k, v = qkv(chunk, layer) if qkv else chunk_qkv(spec, chunk, layer, seed)
        view = mem.view(layer, q, k, v)
        views.append((q, view, attend_ref(q, view)) if attend else (q, view))
        mem.commit(layer, k, v, q)
        if after_commit is not None:
            after_commit(mem, layer)
    mem.end_chunk()
    return views


@pytest.fixture
def spec():
    return tiny_spec()
