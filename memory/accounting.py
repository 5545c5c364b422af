"""What a `memory.manager.MemoryManager` holds, in bytes, and its JSON summary (`stats`).

Everything here is Python ints from the layout and the regions' occupancy: no device sync.
"""

from __future__ import annotations


def region_bytes(mem) -> dict[str, int]:
    """Bytes held per region, summed over layers."""
    lay = mem.layout
    tb = lay.frame_bytes // mem.spec.tokens_per_frame
    out = {"sink": 0, "recent": 0, "mid": 0, "spill": 0, "retrieved": 0, "pending": 0, "index": 0}
    for st in mem.layers:
        out["recent"] += st.recent.held_bytes(tb)
        out["index"] += len(st.recent.frames) * lay.index_frame_bytes
        out["pending"] += st.pending_frames * st.recent.f * tb
        if st.sink is not None:
            out["sink"] += st.sink.held_bytes(tb)
        if st.retrieved is not None:
            out["retrieved"] += st.retrieved.held_bytes(tb)
        if st.mid is not None:
            out["mid"] += st.mid.used * lay.mid_token_bytes
        if st.spill is not None:
            out["spill"] += st.spill.used * lay.spill_token_bytes
    return out


def allocated_bytes(mem) -> int:
    """Bytes of the preallocated cache buffers (>= what is held; <= the budget for managed policies)."""
    total = 0
    for st in mem.layers:
        for region in (st.recent, st.sink, st.retrieved, st.mid, st.spill):
            if region is not None:
                total += region.allocated_bytes()
        if st.ann is not None:
            total += st.ann.nbytes
    return total


def stats(mem) -> dict:
    """JSON-able summary: policy, budget, bytes per region and tier, capacities, positions, archive."""
    lay = mem.layout
    rb = region_bytes(mem)
    tiers = {"full": rb["sink"] + rb["recent"] + rb["retrieved"] + rb["pending"], "int8": 0, "int4": 0, "merged": 0,
             "index": rb["index"]}  # the ANN codes: not keys or values, but held and paid for
    for region, bits in (("mid", lay.mid_bits), ("spill", lay.spill_bits)):
        key = "merged" if lay.merged else {0: "full", 8: "int8", 4: "int4"}[bits]
        tiers[key] += rb[region]
    archive, heads, first = mem.archive, mem.heads, mem.layers[0]
    return {
        "policy": mem.cfg.name,
        "budget_bytes": lay.budget_bytes,
        "kv_bytes": sum(rb.values()),
        "allocated_bytes": allocated_bytes(mem),
        "bytes_per_region": rb,
        "bytes_per_tier": tiers,
        "frames_committed": mem.frames_committed,
        "skipped_frames": mem.skipped_frames,
        "capacity": {"sink_frames": lay.sink_frames, "recent_frames": lay.recent_frames,
                     "mid_tokens": lay.mid_tokens, "spill_tokens": lay.spill_tokens,
                     "retrieved_frames": lay.retrieved_frames, "pending_frames": lay.pending_frames},
        "positions": mem.cfg.positions,
        "max_position": mem.max_position,
        "scorer": mem.cfg.scorer,
        "scorer_trained": mem.scorer.trained,
        "events": dict(mem.events_seen),
        "archive_bytes": archive.nbytes() if archive is not None else 0,
        "archived_frames": min(archive.written, archive.capacity) if archive is not None else 0,
        "retrieved": list(first.retrieved.frames) if first.retrieved else [],
        "static_heads": heads.to_json()["static"] if heads is not None and heads.ready else None,
        "timings_s": dict(mem.timings),
    }
