import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reverie.memory.layout import quant_group, token_bytes
from reverie.memory.token_pool import TokenPool
from reverie.memory.tokens import Tokens


def tokens(n, h=2, d=8, seed=0, frame0=0, score=None):
    g = torch.Generator().manual_seed(seed)
    k, v = torch.randn(h, n, d, generator=g), torch.randn(h, n, d, generator=g)
    frame = torch.arange(frame0, frame0 + n)
    s = torch.rand(n, generator=g) if score is None else score
    return Tokens(k, v, frame, torch.arange(n), s, torch.ones(n))


@settings(max_examples=40, deadline=None)
@given(cap=st.integers(1, 12), batches=st.lists(st.integers(1, 6), min_size=1, max_size=8), seed=st.integers(0, 99))
def test_pool_keeps_exactly_the_top_scores_and_returns_exactly_what_left(cap, batches, seed):
    """Arrivals first fill the free slots; beyond that exactly as many entries leave as arrive, and
    `add(want_evicted=True)` returns precisely those entries (None when nothing left)."""
    pool = TokenPool(capacity=cap, heads=2, head_dim=8, dtype=torch.float32, device="cpu")
    seen_k, seen_v, seen_s, seen_hw, frame0 = [], [], [], [], 0
    for i, n in enumerate(batches):
        t = tokens(n, seed=seed * 100 + i, frame0=frame0)
        held_before = set(pool.frame[: pool.used].tolist())
        room = cap - pool.used
        frame0 += n
        evicted = pool.add(t, int(t.frame[0]), want_evicted=True)
        seen_k.append(t.k)
        seen_v.append(t.v)
        seen_s.append(t.score)
        seen_hw.append(t.hw)
        assert pool.used == min(cap, frame0)
        held_after = set(pool.frame[: pool.used].tolist())
        left = held_before | set(t.frame.tolist())
        left -= held_after
        if n <= room:
            assert evicted is None and not left
            continue
        # the free slots absorb `room` arrivals; the other n - room arrivals push out n - room entries
        assert evicted is not None
        assert evicted.k.shape == (2, n - room, 8) and evicted.v.shape == evicted.k.shape
        assert len(left) == n - room
        assert sorted(evicted.frame.tolist()) == sorted(left)
        # ... with their own data: keys, values, scores of those tokens (whether pool or arrival)
        all_k, all_v, all_s = torch.cat(seen_k, 1), torch.cat(seen_v, 1), torch.cat(seen_s)
        assert torch.equal(evicted.k, all_k[:, evicted.frame])
        assert torch.equal(evicted.v, all_v[:, evicted.frame])
        assert torch.equal(evicted.score, all_s[evicted.frame])
        assert torch.equal(evicted.hw, torch.cat(seen_hw)[evicted.frame])
        # and every entry that left scores no higher than every entry that stayed
        assert float(evicted.score.max()) <= float(pool.score[: pool.used].min())
    scores = torch.cat(seen_s)
    keep = torch.topk(scores, pool.used).indices
    assert sorted(pool.frame[: pool.used].tolist()) == sorted(keep.tolist())
    # what the pool holds is the original data of those tokens
    all_k = torch.cat(seen_k, 1)
    torch.testing.assert_close(pool.k[:, : pool.used], all_k[:, pool.frame[: pool.used]])


def test_evicted_tokens_are_the_losers():
    pool = TokenPool(capacity=3, heads=1, head_dim=4, dtype=torch.float32, device="cpu")
    pool.add(tokens(3, h=1, d=4, score=torch.tensor([5.0, 1.0, 3.0])), 0)
    new = tokens(2, h=1, d=4, frame0=3, score=torch.tensor([2.0, 9.0]))
    ev = pool.add(new, 3, want_evicted=True)
    assert sorted(ev.frame.tolist()) == [1, 3]  # scores 1.0 (pool) and 2.0 (arrival) leave
    assert sorted(pool.frame[:3].tolist()) == [0, 2, 4]
    assert pool.last_dest.tolist()[0] == -1 and pool.last_dest.tolist()[1] >= 0


def test_int8_and_int4_tiers_round_trip_within_half_a_step():
    h, d = 2, 64
    g = quant_group(d)
    for bits in (8, 4):
        pool = TokenPool(capacity=16, heads=h, head_dim=d, dtype=torch.float32, device="cpu", bits=bits, group=g)
        t = tokens(16, h=h, d=d, seed=bits)
        pool.add(t, 0)
        k, v = pool.read()
        for orig, back in ((t.k, k), (t.v, v)):
            grp = orig.reshape(h, 16, d // g, g)
            step = grp.abs().amax(-1) / 127 if bits == 8 else (grp.amax(-1) - grp.amin(-1)) / 15
            err = (back - orig).abs().reshape(h, 16, d // g, g).amax(-1)
            assert (err <= step / 2 + 1e-5).all()
            rel = ((back - orig).norm() / orig.norm()).item()
            assert rel < (0.01 if bits == 8 else 0.1)
        # bytes: codes + scales (+ zero points) per token, as the budget planner counts them
        per_token = token_bytes(h, d, 4, bits)
        assert pool.allocated_bytes() == (pool.capacity + 1) * per_token


def test_merged_pool_bias_is_log_count_and_hides_empty_entries():
    pool = TokenPool(capacity=4, heads=1, head_dim=4, dtype=torch.float32, device="cpu", merged=True)
    t = tokens(3, h=1, d=4, score=torch.tensor([1.0, -math.inf, 2.0]))
    t = t._replace(count=torch.tensor([3.0, 1.0, 1.0]))
    pool.add(t, 0)
    bias = pool.bias()
    assert bias[0] == math.log(3.0) and bias[1] == -math.inf and bias[2] == 0.0
