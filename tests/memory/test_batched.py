"""The batched memory path equals the per-layer path it replaces.

A full-precision mid pool without spill tier or merging puts every layer's pool on one `PoolStack`, and the
manager scores (`Scorer.score_all` / `rescore_all`), archives (`FrameArchive.put_layers`) and compacts
(`PoolStack.add`) the frames leaving `recent` for all layers at once, after the last layer's commit
(`MemoryManager._demote_all`). The per-layer path does the same per layer after each commit (`_demote`,
`TokenPool.add`, `Scorer.score` / `rescore`, `FrameArchive.put`). Here the same session (spec, policy,
budget, seeded K/V/Q, poses) runs once on each path and every view and byte count is compared.

Equality: keys, values, positions, logit biases, slot ids, pool metadata, the archive and the bytes per
region are exact. With one frame per chunk the slots are in the same order too; with two, the batched add
places the same survivors in another slot order (it adds the chunk's frames together, `_demote` one after
the other), so views are compared up to a permutation of the mid pool's slots. Pool scores are exact for
`change` (headwise: `score_all` is the per-layer loop) and compared to float tolerance for the attention
mass (`h2o`, `dual`'s untrained salience proxy: the batched path scales the queries before the matmul, the
per-layer one the logits after it) and the trained salience head (`predict_all`'s stacked matmuls vs
`predict`'s `nn.Linear`): they round differently, while the survivors still agree exactly.

int8/int4 tiers (`mid_bits`, the `quant` spill tier) and merged pools (`tempcache`) have no batched path:
the manager keeps them per layer (checked last), so there is nothing to compare for them.
"""

from __future__ import annotations

import pytest
import torch

from reverie.memory import MemoryManager
from reverie.memory.salience import SalienceHead
from reverie.memory.layer_store import new_stores, segment_names

from memtest import chunk_qkv, tiny_spec

BUDGET = dict(budget_frac=0.25, horizon_frames=48)  # 12 frames per layer: every region fills within ~15 chunks
CHUNKS = 20
BATCHED = ["dual", "h2o", "headwise", "spatial"]


def _pose(c):
    """A walk that comes back to where it was (so retrieval finds archived frames)."""
    return (30.0 * (c % 8), 0.0, 45.0 * (c % 3))


def per_layer_path(mem: MemoryManager) -> MemoryManager:
    """`mem` (fresh) on the per-layer path: one `TokenPool` per layer, demoted after each layer's commit."""
    assert mem.frames_committed == 0
    mem.layers, mem.stack, mem.retrieved = new_stores(mem.spec, mem.layout, mem.device, stack_mid=False)
    mem.batched = False
    return mem


def _pair(policy, spec, **kw):
    kw = {"demote_every": 1, **kw}  # the per-layer path demotes at every commit (batches: test_cadence.py)
    batched = MemoryManager.create(spec, policy=policy, **BUDGET, **kw)
    layered = per_layer_path(MemoryManager.create(spec, policy=policy, **BUDGET, **kw))
    return batched, layered


def _order(ids: torch.Tensor, ordered: bool) -> torch.Tensor:
    """Slot order to compare in: as stored, or by token id (ids are unique: nothing is merged here)."""
    assert ids.unique().numel() == ids.numel()
    return torch.arange(ids.numel()) if ordered else torch.argsort(ids)


def _same_view(a, b, ids_a, ids_b, ordered, where):
    """Segment by segment: the same tokens with the same keys, values, positions and biases (in the same
    slots when `ordered`, else up to a permutation of the slots). Returns the -inf bias entries seen."""
    assert len(a.segments) == len(b.segments), where
    assert torch.equal(a.q_pos, b.q_pos), where
    at = hidden = 0
    for i, (x, y) in enumerate(zip(a.segments[:-1], b.segments[:-1])):
        here = f"{where}, segment {i}"
        n = x.pos.shape[0]
        assert y.pos.shape[0] == n, here
        ia, ib = _order(ids_a[at:at + n], ordered), _order(ids_b[at:at + n], ordered)
        assert torch.equal(ids_a[at:at + n][ia], ids_b[at:at + n][ib]), here
        at += n
        assert torch.equal(x.k[:, ia], y.k[:, ib]) and torch.equal(x.v[:, ia], y.v[:, ib]), here
        assert torch.equal(x.pos[ia], y.pos[ib]), here
        assert (x.bias is None) == (y.bias is None), here
        if x.bias is not None:
            assert torch.equal(x.bias[..., ia], y.bias[..., ib]), here
            hidden += int(torch.isinf(x.bias).sum())
        assert (x.bits, x.group) == (y.bits, y.group) == (0, 0), here
    assert at == ids_a.numel() == ids_b.numel(), where
    scratch_a, scratch_b = a.segments[-1], b.segments[-1]
    assert scratch_a.k is scratch_b.k and torch.equal(scratch_a.pos, scratch_b.pos), where
    return hidden


def _same_memory(a, b, ordered, exact_scores, where):
    """Bytes per region and buffers, and per layer the mid pool's tokens, metadata and scores."""
    assert a.region_bytes() == b.region_bytes(), where
    assert a.allocated_bytes() == b.allocated_bytes(), where
    for layer in range(a.spec.layers):
        at = f"{where}, layer {layer}"
        sa, sb = a.layers[layer], b.layers[layer]
        assert segment_names(sa) == segment_names(sb), at
        if sa.mid is None:
            continue
        n = sa.mid.used
        assert n == sb.mid.used and sa.mid.min_frame == sb.mid.min_frame, at
        ids_a = sa.mid.frame[:n] * a.spec.tokens_per_frame + sa.mid.hw[:n]
        ids_b = sb.mid.frame[:n] * b.spec.tokens_per_frame + sb.mid.hw[:n]
        ia, ib = _order(ids_a, ordered), _order(ids_b, ordered)
        assert torch.equal(ids_a[ia], ids_b[ib]), at
        for name in ("k", "v"):
            assert torch.equal(getattr(sa.mid, name)[:, :n][:, ia], getattr(sb.mid, name)[:, :n][:, ib]), at
        assert torch.equal(sa.mid.count[:n][ia], sb.mid.count[:n][ib]), at
        score_a, score_b = sa.mid.score[:n][ia], sb.mid.score[:n][ib]
        if exact_scores:
            assert torch.equal(score_a, score_b), at
        else:
            torch.testing.assert_close(score_a, score_b, rtol=1e-5, atol=1e-6, msg=at)


def _qkv(spec, chunk, layer):
    """Seeded random q, k, v; head 1 attends only to its own chunk (a static head for `headwise`)."""
    q, k, v = chunk_qkv(spec, chunk, layer, seed=3)
    q = q.clone()
    q[1] = k[1] * 8.0
    return q, k, v


def _run_both(a, b, spec, chunks=CHUNKS, exact_scores=False):
    """Drive both memories through `chunks` identical chunks, comparing every view (before the commit)
    and the memory after every chunk. Returns how many -inf (hidden) bias entries the views had.

    One chunk frame at a time the two paths place arrivals in the same slots; with several frames per
    chunk the batched add places the same survivors in another slot order (see `PoolStack`)."""
    ordered = spec.chunk_frames == 1
    hidden = 0
    for c in range(chunks):
        pose = _pose(c)
        a.begin_chunk(pose=pose)
        b.begin_chunk(pose=pose)
        for layer in range(spec.layers):
            q, k, v = _qkv(spec, c, layer)
            where = f"chunk {c}, layer {layer}"
            hidden += _same_view(a.view(layer, q, k, v), b.view(layer, q, k, v), a.slot_tokens(layer),
                                 b.slot_tokens(layer), ordered, where)
            a.commit(layer, k, v, q)
            b.commit(layer, k, v, q)
        a.end_chunk()
        b.end_chunk()
        _same_memory(a, b, ordered, exact_scores, f"after chunk {c}")
    return hidden


def _check_exercised(a, b, spec):
    """The run did what it claims: the recent window is full and frames left it; the mid pool is full and
    more tokens entered it than it holds (so the scorer chose and evicted, on both paths)."""
    lay, st = a.layout, a.layers[0]
    assert len(st.recent.frames) == lay.recent_frames
    demoted = a.frames_committed - lay.sink_frames - lay.recent_frames  # frames that left `recent`
    assert demoted > 0 and a.frames_committed == b.frames_committed
    if lay.mid_tokens:
        assert st.mid.used == b.layers[0].mid.used == lay.mid_tokens
        assert demoted * spec.tokens_per_frame > 2 * lay.mid_tokens


@pytest.mark.parametrize("chunk_frames", [1, 2])
@pytest.mark.parametrize("policy", BATCHED)
def test_batched_path_equals_per_layer_path(policy, chunk_frames):
    spec = tiny_spec(layers=3, chunk_frames=chunk_frames)
    a, b = _pair(policy, spec)
    assert a.batched and not b.batched
    assert (a.stack is not None) == bool(a.layout.mid_tokens) and b.stack is None
    hidden = _run_both(a, b, spec, exact_scores=policy in ("headwise", "spatial"))
    _check_exercised(a, b, spec)
    if a.archive is not None:
        assert a.stats()["archived_frames"] > 0 and b.stats()["archived_frames"] == a.stats()["archived_frames"]
        n = min(a.archive.written, a.archive.capacity)  # slots past `written` are uninitialised memory
        assert a.archive.slot_of == b.archive.slot_of and b.archive.written == a.archive.written
        assert torch.equal(a.archive.k[:n], b.archive.k[:n]) and torch.equal(a.archive.v[:n], b.archive.v[:n])
    if a.layout.retrieved_frames:
        assert a.layers[0].retrieved.frames, "retrieval never brought a frame back"
    if a.heads is not None:  # head groups decided: static heads' hidden slots (-inf bias) were compared too
        assert a.heads.ready and any(a.stats()["static_heads"].values())
        assert a.stats()["static_heads"] == b.stats()["static_heads"]
        assert hidden > 0


def test_batched_path_equals_per_layer_path_with_a_trained_salience_head(tmp_path):
    """`dual` with learned salience: `SalienceHead.predict_all` over the stack vs `predict` per layer."""
    spec = tiny_spec(layers=3)
    head = SalienceHead(spec.layers, spec.heads, spec.head_dim)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    path = tmp_path / "s.safetensors"
    head.save(path, spec.name)
    a, b = _pair("dual", spec, salience_weights=str(path))
    assert a.scorer.trained and a.stack is not None
    _run_both(a, b, spec)
    _check_exercised(a, b, spec)


@pytest.mark.parametrize("policy, kw", [("quant", {}), ("tempcache", {}), ("h2o", {"mid_bits": 8}),
                                        ("h2o", {"mid_bits": 4})])
def test_quantized_spill_and_merged_pools_stay_on_the_per_layer_path(policy, kw):
    """Only full-precision, unmerged mid pools without a spill tier are stacked: int8/int4 tiers and
    merging have no batched path, so a manager with them never takes it."""
    spec = tiny_spec(layers=2)
    mem = MemoryManager.create(spec, policy=policy, **BUDGET, **kw)
    lay = mem.layout
    assert lay.mid_tokens and (lay.mid_bits or lay.spill_tokens or lay.merged)
    assert mem.stack is None and not mem.batched
