"""The budget invariant, property-based over every policy, budgets, chunk sizes and session lengths."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reverie.memory import BudgetError, MemoryManager, available_policies

from memtest import run_chunk, tiny_spec

MANAGED = [p for p in available_policies() if p != "full"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(MANAGED), frac=st.floats(0.1, 1.0), chunk=st.integers(1, 3),
       chunks=st.integers(1, 14), horizon=st.integers(8, 40), seed=st.integers(0, 3))
def test_budget_is_never_exceeded_after_any_commit(policy, frac, chunk, chunks, horizon, seed):
    spec = tiny_spec(chunk_frames=chunk)
    try:
        mem = MemoryManager.create(spec, policy=policy, budget_frac=frac, horizon_frames=horizon)
    except BudgetError:
        # refused at creation: only legitimate when the budget is under the policy's minimum
        assert frac * horizon < 8 * chunk + 2
        return
    budget = mem.layout.budget_bytes
    assert mem.allocated_bytes() <= budget

    def check(m, layer):
        assert m.kv_bytes() <= budget
        assert m.allocated_bytes() <= budget

    for c in range(chunks):
        pose = (10.0 * math.cos(c), 10.0 * math.sin(c), (37.0 * c) % 360)
        for _, _, out in run_chunk(mem, spec, c, seed=seed, pose=pose, after_commit=check, attend=True):
            assert torch.isfinite(out).all()
    assert mem.frames_committed == chunks * chunk


@pytest.mark.parametrize("policy", MANAGED)
def test_every_policy_reports_stats_and_bounded_positions(policy):
    spec = tiny_spec(chunk_frames=1)
    mem = MemoryManager.create(spec, policy=policy, budget_frac=0.25, horizon_frames=48)
    top = mem.max_position
    for c in range(40):
        for _, view in run_chunk(mem, spec, c, pose=(float(c % 7), 0.0, float(15 * c % 360))):
            if top is not None:
                assert max(int(s.pos.max()) for s in view.segments) <= top
                assert int(view.q_pos.max()) <= top
    stats = mem.stats()
    assert stats["policy"] == policy and stats["kv_bytes"] == mem.kv_bytes() <= stats["budget_bytes"]
    assert sum(stats["bytes_per_region"].values()) == sum(stats["bytes_per_tier"].values())


def test_default_policy_positions_stay_bounded_over_a_long_run():
    spec = tiny_spec(chunk_frames=1, tokens_per_frame=2, layers=1)
    mem = MemoryManager.create(spec, budget_frac=0.25, horizon_frames=64)  # the default policy
    assert mem.cfg.name == "dual" and mem.max_position is not None
    seen = 0
    for c in range(200):
        for _, view in run_chunk(mem, spec, c, pose=(float(c % 50), 0.0, float(c % 360))):
            seen = max(seen, max(int(s.pos.max()) for s in view.segments))
    assert seen <= mem.max_position < 64
