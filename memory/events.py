"""Memory events: what a scene change does to what the model remembers.

An event is handed to `MemoryManager.begin_chunk(events=...)` as a name or as a `MemoryEvent` (a name with
its parameters). The memory handles two kinds itself:

* `flush` (Infinity-RoPE's KV flush): keep the sink and the newest `keep_frames` frames, drop the rest
  (pools, retrieved frames, frames waiting for demotion). `keep_frames=0` keeps the sink alone: a new
  scene that owes nothing to the old one. The clock goes on: the next frame sits right after the last.
* `cut` (Infinity-RoPE's RoPE cut): keep everything, but the next frame's id, and so its temporal
  position, jumps `gap` frames past the last one, so the history reads as another, earlier scene. Under
  `absolute` positions the gap is there as such; under `relative` and `sink-realign` the old frames look
  `gap` frames older (collapsing onto the oldest position once past the span); `packed` positions close
  every gap by design, so a cut changes nothing there.

Re-encoding the kept frames under a new condition (PaFu-KV's / LongLive's KV re-cache) needs the model,
so it is the session's one recache path, which `engine.session.Session.scene` runs for `recache` (and
`Session.rebuild_memory` for a live policy or budget change).
"""

from __future__ import annotations

from dataclasses import dataclass

#: frames a RoPE cut leaves between the history and the new scene: Infinity-RoPE's code places the new
#: scene's first block 25 or more frames past the history it keeps
CUT_GAP_FRAMES = 25

KINDS = ("flush", "cut")

#: how a session handles a new scene (`engine.session.Session.scene`; a policy's `on_scene`)
SCENE_HANDLINGS = ("flush", "cut", "recache")


@dataclass(frozen=True, slots=True)
class MemoryEvent:
    """One event. `keep_frames`: for `flush`, the newest frames kept (None: one chunk, at least 2).
    `gap`: for `cut`, frames skipped (None: `CUT_GAP_FRAMES`)."""

    kind: str
    keep_frames: int | None = None
    gap: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown memory event {self.kind!r}; known: {', '.join(KINDS)}")
        for name in ("keep_frames", "gap"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"memory event {name} must be an int >= 0, got {value!r}")


def as_event(event) -> MemoryEvent:
    """A name or a `MemoryEvent` -> a `MemoryEvent` (ValueError for an unknown kind)."""
    return event if isinstance(event, MemoryEvent) else MemoryEvent(str(getattr(event, "kind", event)))
