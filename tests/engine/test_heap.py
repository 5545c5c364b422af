"""`settle_heap`: what is alive at start-up leaves the collector's generations; later garbage is collected."""

import gc

from reverie.engine.heap import settle_heap


def test_settle_heap_freezes_what_is_alive_and_still_collects_later_cycles():
    class Node:
        pass

    before = gc.get_freeze_count()
    keep = [Node() for _ in range(100)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= before + 100
        cycle = Node()
        cycle.self = cycle
        del cycle
        assert gc.collect() >= 1  # garbage made after the freeze is still found
    finally:
        gc.unfreeze()
    assert keep
