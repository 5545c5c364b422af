"""`reverie bench memory --attention-only`: what each memory policy costs a frame at a long history, without
the model or the game.

Every memory under test is filled with the same `horizon` frames of random keys and values (the model's
geometry: layers, heads, head dim, tokens per frame, cache dtype), then times `chunks` chunks of what the
model asks of it each frame: `begin_chunk`, and per layer `view` (where an index picks its candidates),
`kernels.attend` of random queries over that view, and `commit`. The memories take turns chunk by chunk,
in an order that rotates, so each is timed under the same machine conditions; the figure is the median
over the chunks, in ms per frame. On the CPU this runs in seconds where `bench memory`'s rollouts at
4096 frames of history take hours; it measures the memory's share of a frame, not quality.
"""

from __future__ import annotations

import statistics
import time


def time_memories(spec, memories: dict, horizon: int, chunks: int, seed: int = 0, device="cpu") -> dict:
    """`{key: median ms per frame}` of `chunks` chunks of view + attention + commit on each of `memories`
    (`{key: memory}`, empty ones) after `horizon` frames of random history."""
    import torch

    from reverie.kernels import attend

    if horizon < 0 or chunks < 1:
        raise ValueError(f"need horizon >= 0 and chunks >= 1, got {horizon} and {chunks}")
    gen = torch.Generator().manual_seed(seed)
    n = spec.chunk_frames * spec.tokens_per_frame
    shape = (spec.heads, n, spec.head_dim)
    pool = [[torch.randn(shape, generator=gen).to(device=device, dtype=spec.kv_dtype) for _ in range(3)]
            for _ in range(spec.layers)]  # a few random chunks, reused: filling 4096 frames stays quick

    def chunk(memory, c: int, attend_too: bool) -> None:
        memory.begin_chunk()
        for layer in range(spec.layers):
            q, k, v = pool[(c + layer) % len(pool)]
            if attend_too:
                attend(q, memory.view(layer, q, k, v))
            memory.commit(layer, k, v, q)
        memory.end_chunk()

    for memory in memories.values():
        for c in range(0, horizon, spec.chunk_frames):
            chunk(memory, c, attend_too=False)
    keys = list(memories)
    times: dict = {key: [] for key in keys}
    for c in range(chunks):
        for key in keys[c % len(keys):] + keys[:c % len(keys)]:
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            chunk(memories[key], c, attend_too=True)
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            times[key].append(1000.0 * (time.perf_counter() - t0) / spec.chunk_frames)
    return {key: statistics.median(t) for key, t in times.items()}
