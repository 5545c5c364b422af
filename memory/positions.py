"""Temporal position policies: pure functions from slot metadata and the frame clock to RoPE positions.

Keys are cached before RoPE, so a slot's position is assigned at read time and may change every chunk.
Every policy places the current chunk's frames at the top of the range and, except `absolute`, keeps all
positions inside `[0, span)` with `span = S + M + K + R + C` (sink frames, mid/spill pools in
frame-equivalents, retrieved frames, recent frames, chunk frames), so a 5000-frame run never produces a
position the model's RoPE was not trained on: the largest position is `span - 1` (`max_position`).

* `absolute` (Self-Forcing, the `full` reference): position = frame index; grows without bound.
* `relative` (window-relative; Infinity-RoPE, StreamingLLM cache-relative): position = top - age, where
  the oldest slots (retrieved frames included) collapse onto 0, i.e. they keep their true distance up to
  the span and look "far away" beyond it.
* `sink-realign` (Deep Sink): like `relative` for the tail (collapsing at S), and the sink frames are
  re-aligned to sit immediately before the oldest frame the layer's tail still holds (found on the
  device from the slots' positions, so eviction from the pools moves the sink up), with no temporal gap.
* `packed` (PackForcing-style contiguous): sink `[0, S)`, the pools' frames compressed in order into
  `[S, S + M)` from the oldest frame they still hold (found on the device), retrieved frames, the recent
  frames, then the chunk, with no gaps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class Clock:
    """Where the session is, as host integers (one snapshot per chunk and layer).

    now: first frame of the current chunk. chunk: frames per chunk. span: S + M + K + R + C capacities.
    sink_cap, pool_span, retrieved_cap, recent_cap: region capacities in frames.
    sink_frames, retrieved_frames, recent_frames: frame ids held (oldest first).
    pool_lo: lower bound of frames in the pools (None if empty).
    """

    now: int
    chunk: int
    span: int
    sink_cap: int
    pool_span: int
    retrieved_cap: int
    recent_cap: int
    sink_frames: tuple[int, ...]
    retrieved_frames: tuple[int, ...]
    recent_frames: tuple[int, ...]
    pool_lo: int | None

    @property
    def top(self) -> int:
        return self.span - self.chunk

    @property
    def recent_lo(self) -> int:
        return self.recent_frames[0] if self.recent_frames else self.now


class PositionPolicy(ABC):
    """Assigns temporal positions. `frames` tensors are int64 slot frame ids (device); results int64."""

    bounded = True

    @abstractmethod
    def query(self, clock: Clock) -> list[int]:
        """Positions of the current chunk's frames."""

    #: pool positions depend on the oldest frame the pools hold: callers pass it as `lo` (see `tail`)
    pools_need_lo = False

    @abstractmethod
    def tail(self, frames: torch.Tensor, clock: Clock, region: str, lo: torch.Tensor | None = None) -> torch.Tensor:
        """Positions for slots of the `recent` ring or the `pool` regions. `frames`: `[n]`, or `[L, n]` for
        every layer's stacked pool. `lo` (pools, when `pools_need_lo`): the oldest frame the layer's pools
        hold, a device tensor broadcastable to `frames` (no host sync)."""

    @abstractmethod
    def sink(self, clock: Clock) -> list[int]:
        """Positions of the held sink frames (oldest first)."""

    @abstractmethod
    def retrieved(self, clock: Clock) -> list[int]:
        """Positions of the retrieved frames (in the order held)."""

    def max_position(self, span: int) -> int | None:
        return span - 1

    #: the sink is placed from what the tail holds (`sink_below`), not from the clock alone (`sink`)
    sink_follows_tail = False

    def sink_below(self, clock: Clock, tail_lo: torch.Tensor) -> torch.Tensor:
        """Per-frame sink positions placed from `tail_lo`, the lowest position a layer's tail (pools and
        recent) really holds (a 0-d device tensor: no host sync). Used when `sink_follows_tail`."""
        raise NotImplementedError


class Absolute(PositionPolicy):
    bounded = False

    def query(self, clock):
        return [clock.now + i for i in range(clock.chunk)]

    def tail(self, frames, clock, region, lo=None):
        return frames.clone()  # never alias the slot metadata, which the next commit rewrites

    def sink(self, clock):
        return list(clock.sink_frames)

    def retrieved(self, clock):
        return list(clock.retrieved_frames)

    def max_position(self, span):
        return None


class Relative(PositionPolicy):
    def query(self, clock):
        return [clock.top + i for i in range(clock.chunk)]

    def tail(self, frames, clock, region, lo=None):
        return torch.clamp(frames - (clock.now - clock.top), min=0)

    def sink(self, clock):
        return [max(clock.top - (clock.now - f), 0) for f in clock.sink_frames]

    def retrieved(self, clock):
        # true distance, clamped like every old slot: the model sees a far-away memory, not a recent frame
        return [max(clock.top - (clock.now - f), self._floor(clock)) for f in clock.retrieved_frames]

    def _floor(self, clock) -> int:
        return 0


class SinkRealign(Relative):
    sink_follows_tail = True

    def tail(self, frames, clock, region, lo=None):
        return torch.clamp(frames - (clock.now - clock.top), min=clock.sink_cap)

    def _floor(self, clock) -> int:
        return clock.sink_cap

    def sink(self, clock):  # when the tail is empty: just below where its oldest frame would sit
        oldest = clock.recent_lo if clock.pool_lo is None else min(clock.pool_lo, clock.recent_lo)
        tail_lo = max(clock.top - (clock.now - oldest), clock.sink_cap)
        n = len(clock.sink_frames)
        return [tail_lo - n + i for i in range(n)]

    def sink_below(self, clock, tail_lo):
        n = len(clock.sink_frames)
        return tail_lo.clamp(min=clock.sink_cap) - n + torch.arange(n, device=tail_lo.device)


class Packed(PositionPolicy):
    pools_need_lo = True

    def _recent_base(self, clock):
        pool = clock.pool_span if clock.pool_lo is not None else 0
        return len(clock.sink_frames) + pool + len(clock.retrieved_frames)

    def query(self, clock):
        base = self._recent_base(clock) + len(clock.recent_frames)
        return [base + i for i in range(clock.chunk)]

    def sink(self, clock):
        return list(range(len(clock.sink_frames)))

    def retrieved(self, clock):
        order = sorted(range(len(clock.retrieved_frames)), key=lambda i: clock.retrieved_frames[i])
        base = self._recent_base(clock) - len(order)
        out = [0] * len(order)
        for rank, i in enumerate(order):
            out[i] = base + rank
        return out

    def tail(self, frames, clock, region, lo=None):
        if region == "recent":
            return frames - clock.recent_lo + self._recent_base(clock)
        if lo is None:  # the host's `pool_lo` never rises after evictions, so it cannot stand in for it
            raise ValueError("packed positions of pooled slots need `lo`, the oldest frame the pools hold")
        width = (clock.recent_lo - lo).clamp(min=1)
        s = len(clock.sink_frames)
        rel = torch.div((frames - lo).clamp(min=0) * clock.pool_span, width, rounding_mode="floor")
        return rel.clamp(max=clock.pool_span - 1) + s


POSITIONS: dict[str, type[PositionPolicy]] = {
    "absolute": Absolute,
    "relative": Relative,
    "sink-realign": SinkRealign,
    "packed": Packed,
}


def make_position_policy(name: str) -> PositionPolicy:
    try:
        return POSITIONS[name]()
    except KeyError:
        raise ValueError(f"unknown position policy '{name}'; available: {', '.join(POSITIONS)}") from None
