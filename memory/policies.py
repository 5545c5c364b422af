"""The named policies: a dict registry of `PolicyConfig`s, each a configuration of the one manager.

Each published method maps to regions, scorer, tiers, head scope and a position policy;
the entries below are those mappings. `resolve(name, **overrides)` returns a validated copy with the
overrides applied (an unknown name or field is a clear error listing what exists).
"""

from __future__ import annotations

import dataclasses

from reverie.memory.config import PolicyConfig
from reverie.memory.errors import UnknownPolicyError

POLICIES: dict[str, PolicyConfig] = {}


def register_policy(cfg: PolicyConfig) -> None:
    POLICIES[cfg.name] = cfg


def available_policies() -> list[str]:
    return list(POLICIES)


def resolve(name: str, **overrides) -> PolicyConfig:
    """The policy registered as `name`, with `overrides` (PolicyConfig fields) applied and validated."""
    if name not in POLICIES:
        raise UnknownPolicyError(f"unknown memory policy '{name}'; available: {', '.join(POLICIES)}")
    bad = sorted(set(overrides) - set(PolicyConfig.field_names()) - {"name"})
    if bad:
        raise UnknownPolicyError(
            f"unknown override(s) {', '.join(bad)} for policy '{name}'; "
            f"valid: {', '.join(PolicyConfig.field_names()[2:])}")
    return dataclasses.replace(POLICIES[name], **overrides)


register_policy(PolicyConfig(
    name="full", unbounded=True, positions="absolute",
    description="reference: keeps every frame (grows, or fills a preallocated horizon); absolute positions"))
register_policy(PolicyConfig(
    name="window", sink_frames=1, positions="absolute",
    description="Self-Forcing/LongLive rolling cache: sink frames + FIFO recent window"))
register_policy(PolicyConfig(
    name="ann", sink_frames=1, positions="absolute", ann_index="centroid", ann_bits=6, ann_tables=4, ann_frames=64,
    ann_exact_frames=32, ann_rest_tokens=3,
    description="TempCache's AnnSA: sink + a FIFO window; the chunk attends to its newest 32 frames and the 64 "
                "older ones whose key centroids predict the most of its queries' attention, and to every other "
                "frame as 3 mean tokens (--set ann_rest_tokens=0: not at all, as published; --set ann_index=lsh: "
                "an LSH index of the keys instead)"))

# Every managed policy below uses bounded positions (a long session never leaves the RoPE range).
register_policy(PolicyConfig(
    name="deep-sink", sink_frames=1, sink_frac=0.4, mid_frac=0.35, scorer="participation",
    positions="sink-realign", query_frames=4,
    description="Deep Forcing: deep sink (40%) with RoPE re-alignment + participative compression "
                "(summed recent clean queries . key) of the frames between sink and recent"))
register_policy(PolicyConfig(
    name="h2o", mid_frac=0.5, scorer="mass", positions="relative",
    description="H2O: recent window + heavy hitters by (moving-average) attention mass"))
register_policy(PolicyConfig(
    name="salience", sink_frames=1, mid_frac=0.6, scorer="salience", positions="relative", age_decay=0.98,
    description="PaFu-KV: recent window + tokens kept by the learned S-MLP salience head "
                "(attention-mass proxy when the model has no trained head)"))
register_policy(PolicyConfig(
    name="headwise", sink_frames=1, mid_frac=0.5, scorer="change", head_groups="profile", positions="relative",
    score_decay=0.5,
    description="Forcing-KV: heads profiled into static (sink + anchor frame + chunk) and dynamic groups; "
                "dynamic heads also keep the most-changing segments (segment similarity)"))
register_policy(PolicyConfig(
    name="tempcache", mid_frac=0.8, merge_threshold=0.95, scorer="recency", positions="relative",
    description="TempCache: tokens leaving the window merge into their temporal correspondent when near-"
                "duplicate (mean value, log-count logit bias)"))
register_policy(PolicyConfig(
    name="quant", sink_frames=1, mid_frac=0.6, spill_frac=0.5, spill_bits=4, scorer="mass", positions="relative",
    description="MiKV: tokens the attention-mass score would evict are kept in an int4 tier instead"))
register_policy(PolicyConfig(
    name="spatial", sink_frames=1, retrieved_frames=4, archive_frames=512, positions="relative",
    description="Memory Forcing for KV: recent window + frames retrieved from a pose-indexed host archive "
                "by view overlap"))
register_policy(PolicyConfig(
    name="dual", sink_frames=1, sink_frac=0.4, mid_frac=0.5, scorer="salience", retrieved_frames=4, age_decay=0.98,
    archive_frames=512, positions="relative", demote_every=4, retrieve_every=4,
    description="default: deep sink/anchor (40 %) + salience-pruned recent + spatial retrieval; demotion "
                "and retrieval every 4 frames"))
