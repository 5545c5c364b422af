"""Rate limits on starting sessions: a token bucket per peer and one for the whole server.

Building a session is the expensive thing a client can ask for (its memory is allocated and its seed frame
run through the model), so the server spends a token of the peer's bucket and one of the server's on every
session it builds. A bucket holds `burst` tokens and refills at `per_s`; `Limiter.acquire` either takes a
token from both buckets or takes none and says how long to wait. Peers are keyed by ZeroMQ routing id (one
per connection); the server-wide bucket bounds a flood that opens connection after connection. Per-peer
buckets live in a bounded LRU table, so a flood of identities cannot grow the server's memory; a peer
forgotten that way starts again with a full bucket and is still held by the server-wide one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `burst` at once, then `per_s` a second."""

    burst: int
    per_s: float

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_s <= 0:
            raise ValueError(f"a rate needs burst >= 1 and per_s > 0, got {self}")

    def describe(self) -> str:
        every = 1.0 / self.per_s
        return f"{self.burst} at once, then one every {every:g} s"


class Bucket:
    """A token bucket of `rate`, full at `now`."""

    __slots__ = ("rate", "tokens", "t")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate, self.tokens, self.t = rate, float(rate.burst), now

    def refill(self, now: float) -> float:
        """Tokens available at `now`."""
        self.tokens = min(float(self.rate.burst), self.tokens + (now - self.t) * self.rate.per_s)
        self.t = now
        return self.tokens

    def wait_s(self) -> float:
        """Seconds until one token is available (0 if one is)."""
        return max(0.0, (1.0 - self.tokens) / self.rate.per_s)


class Limiter:
    """Per-peer buckets of `peer` rate (at most `max_peers` remembered) and one server bucket of `total`."""

    def __init__(self, peer: Rate, total: Rate, max_peers: int = 4096) -> None:
        if max_peers < 1:
            raise ValueError("max_peers must be >= 1")
        self.peer, self.total, self.max_peers = peer, total, max_peers
        self._peers: OrderedDict[Hashable, Bucket] = OrderedDict()
        self._all: Bucket | None = None

    def acquire(self, key: Hashable, now: float) -> tuple[bool, str]:
        """Take one token for `key` (and one of the server's), or none; `(ok, why not)`."""
        mine = self._peers.get(key)
        if mine is None:
            mine = self._peers[key] = Bucket(self.peer, now)
            while len(self._peers) > self.max_peers:
                self._peers.popitem(last=False)
        self._peers.move_to_end(key)
        if self._all is None:
            self._all = Bucket(self.total, now)
        if mine.refill(now) < 1.0:
            return False, (f"this client starts sessions too often (at most {self.peer.describe()}); "
                           f"try again in {mine.wait_s():.1f} s")
        if self._all.refill(now) < 1.0:
            return False, (f"the server is starting too many sessions (at most {self.total.describe()} in all); "
                           f"try again in {self._all.wait_s():.1f} s")
        mine.tokens -= 1.0
        self._all.tokens -= 1.0
        return True, ""

    def __len__(self) -> int:
        return len(self._peers)
