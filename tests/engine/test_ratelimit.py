import pytest

from reverie.engine.ratelimit import Limiter, Rate


def test_a_peer_gets_its_burst_then_one_per_interval_and_is_told_when():
    lim = Limiter(Rate(burst=2, per_s=0.5), Rate(burst=100, per_s=100))
    assert lim.acquire("a", 0.0)[0] and lim.acquire("a", 0.0)[0]
    ok, why = lim.acquire("a", 0.5)
    assert not ok and "too often" in why and "2 at once, then one every 2 s" in why and "try again in 1.5 s" in why
    assert lim.acquire("b", 0.5)[0]                      # another peer has its own bucket
    assert lim.acquire("a", 2.0)[0] and not lim.acquire("a", 2.0)[0]


def test_the_server_bucket_bounds_all_peers_together():
    lim = Limiter(Rate(burst=1, per_s=1), Rate(burst=3, per_s=1))
    assert all(lim.acquire(peer, 0.0)[0] for peer in "abc")
    ok, why = lim.acquire("d", 0.0)
    assert not ok and "the server is starting too many sessions" in why
    assert lim.acquire("d", 1.0)[0]


def test_a_refusal_costs_no_token_and_the_peer_table_stays_bounded():
    lim = Limiter(Rate(burst=1, per_s=1), Rate(burst=1, per_s=1), max_peers=8)
    assert lim.acquire("a", 0.0)[0]
    assert not lim.acquire("b", 0.0)[0]                  # the server bucket is empty: b keeps its own token
    assert lim.acquire("b", 1.0)[0]
    for i in range(100):
        lim.acquire(i, 2.0 + i)
    assert len(lim) == 8


def test_rates_are_checked():
    with pytest.raises(ValueError):
        Rate(burst=0, per_s=1)
    with pytest.raises(ValueError):
        Rate(burst=1, per_s=0)
