"""The named policies: a dict registry of `PolicyConfig`s, each a configuration of the one manager.

kv-methods.md §9.5 maps every published method to regions, scorer, tiers, head scope and position policy;
the entries below are those mappings. `resolve(name, **overrides)` returns a validated copy with the
overrides applied (an unknown name or field is a clear error listing what exists).
"""

from __future__ import annotations

import dataclasses

from memory.config import PolicyConfig
from memory.errors import UnknownPolicyError

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
            f"unknown override(s) {', '.join(bad)} for policy '{name}'; valid: {', '.join(PolicyConfig.field_names()[2:])}")
    return dataclasses.replace(POLICIES[name], **overrides)


register_policy(PolicyConfig(
    name="full", unbounded=True, positions="absolute",
    description="reference: keeps every frame (grows, or fills a preallocated horizon); absolute positions"))
register_policy(PolicyConfig(
    name="window", sink_frames=1, positions="absolute",
    description="Self-Forcing/LongLive rolling cache: sink frames + FIFO recent window"))
