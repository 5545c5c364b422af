"""Builders for views in tests and benches: quantized segments and random views of a given geometry."""

from __future__ import annotations

import torch

from reverie.kernels.quant import quantize_ref
from reverie.kernels.view import KVSegment, KVView, RopeSpec


def make_segment(
    k: torch.Tensor,
    v: torch.Tensor,
    pos: torch.Tensor,
    *,
    bits: int = 0,
    group: int = 32,
    index: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> KVSegment:
    """A segment holding float `k`, `v` `[H, S, D]`, quantized with `quantize_ref` when `bits` is 8 or 4."""
    if not bits:
        return KVSegment(k=k, v=v, pos=pos, index=index, bias=bias)
    kc, ks, kz = quantize_ref(k, bits, group)
    vc, vs, vz = quantize_ref(v, bits, group)
    return KVSegment(k=kc, v=vc, pos=pos, index=index, bias=bias, k_scale=ks, k_zero=kz, v_scale=vs,
                     v_zero=vz, bits=bits, group=group)


def random_view(
    heads: int,
    head_dim: int,
    queries: int,
    cache: int,
    *,
    bits: int = 0,
    group: int = 32,
    gather: int | None = None,
    bias: str | None = None,
    rope_dims: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, KVView]:
    """Random queries and a two-segment view: a cache tier of `cache` slots, then the scratch chunk.

    Args:
        heads, head_dim, queries: query geometry (`q` is `[heads, queries, head_dim]`).
        cache: slots in the cache tier (positions 0..cache-1, in frames of `queries` tokens).
        bits: 0 (float), 8 or 4 for the cache tier.
        gather: if set, only this many cache slots are visible, through a sorted random index.
        bias: None, `"slot"` (`[S]` log-counts) or `"head"` (`[H, S]`, with some slots hidden per head).
        rope_dims: temporal RoPE channels (default: a quarter of the head dim, rounded to even).

    Returns:
        `(q, view)`; the scratch segment holds the chunk's own keys/values at the queries' positions.
    """
    g = generator or torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    h, d = heads, head_dim
    dims = rope_dims if rope_dims is not None else max(2, (d // 4) // 2 * 2)
    q = randn(h, queries, d)
    frame = max(1, queries)
    cache_pos = (torch.arange(cache) // frame).to(device)
    chunk_pos = torch.full((queries,), cache // frame + 1, dtype=torch.int64, device=device)
    index = None
    if gather is not None:
        index = torch.randperm(cache, generator=g)[:gather].sort().values.to(device)
    slot_bias = None
    if bias == "slot":
        slot_bias = torch.log(torch.randint(1, 5, (cache,), generator=g).float()).to(device)
    elif bias == "head":
        slot_bias = torch.log(torch.randint(1, 5, (h, cache), generator=g).float())
        hidden = torch.rand(h, cache, generator=g) < 0.2
        slot_bias = slot_bias.masked_fill(hidden, float("-inf")).to(device)
    elif bias is not None:
        raise ValueError(f"bias must be None, 'slot' or 'head', got {bias!r}")
    tier = make_segment(randn(h, cache, d), randn(h, cache, d), cache_pos, bits=bits, group=group,
                        index=index, bias=slot_bias)
    scratch = KVSegment(k=randn(h, queries, d), v=randn(h, queries, d), pos=chunk_pos)
    return q, KVView(segments=(tier, scratch), q_pos=chunk_pos, rope=RopeSpec(dims))
