"""The memory of a model without an attention cache (`ModelSpec.layers == 0`): nothing to keep.

A frame-stacking model (DIAMOND's shape) carries its history as its own fixed context: the engine keeps its
last `frame_context` clean latents per session (`engine.sampler.FrameContext`) and passes them to
`denoise` / `commit`. Its memory holds no keys or values, so no cache policy applies: its one policy is
`none`, and a budget, if given, must cover that context (`memory.footprint.session_bytes` charges it).
"""

from __future__ import annotations

from reverie.memory.errors import BudgetError, UnknownPolicyError
from reverie.memory.events import as_event

NO_CACHE = "none"


def check_no_cache(spec, policy: str) -> None:
    """Raise a clear error when `policy` does not fit `spec`'s kind of memory."""
    if spec.layers == 0 and policy != NO_CACHE:
        raise UnknownPolicyError(f"model '{spec.name}' has no attention cache, so memory policies ('{policy}') do "
                                 f"not apply: its memory is its last {spec.frame_context} frame(s), policy '{NO_CACHE}'")
    if spec.layers > 0 and policy == NO_CACHE:
        raise UnknownPolicyError(f"policy '{NO_CACHE}' is for models without an attention cache; "
                                 f"model '{spec.name}' has {spec.layers} cached layers")


def check_context_budget(spec, budget_bytes: int | None, context_bytes: int) -> None:
    """A budget, when given, must cover the frame context a cache-free model keeps (`BudgetError`)."""
    if budget_bytes and budget_bytes < context_bytes:
        raise BudgetError(f"model '{spec.name}' keeps {spec.frame_context} context frame(s), {context_bytes} "
                          f"bytes, over the budget of {budget_bytes}")


class NoCache:
    """The memory API (`engine.session.MemoryLike`) with nothing cached."""

    policy = NO_CACHE

    def __init__(self, spec, budget_bytes: int | None = None, context_bytes: int = 0) -> None:
        check_no_cache(spec, NO_CACHE)
        check_context_budget(spec, budget_bytes, context_bytes)
        self.spec = spec
        self.budget_bytes = budget_bytes
        self.frames_committed = 0
        self._open = False

    def begin_chunk(self, pose=None, events=()) -> None:
        for event in events:  # nothing to flush or cut, but an unknown event is still an error
            as_event(event)
        self._open = True

    def end_chunk(self) -> None:
        if self._open:  # a chunk passes through: counted as committed, as a cache would count it
            self.frames_committed += self.spec.chunk_frames
        self._open = False

    def view(self, layer, q, k, v):
        raise RuntimeError(f"model '{self.spec.name}' declares no cached layers but asked for a view")

    def commit(self, layer, k, v, q) -> None:
        raise RuntimeError(f"model '{self.spec.name}' declares no cached layers but committed keys/values")

    def kv_bytes(self) -> int:
        return 0

    def region_bytes(self) -> dict[str, int]:
        return {}

    def flush(self, keep_frames: int | None = None) -> None:
        pass

    def cut(self, gap: int = 0) -> None:
        pass

    def reset(self) -> None:
        self.frames_committed = 0

    def stats(self) -> dict:
        return {"policy": NO_CACHE, "budget_bytes": self.budget_bytes, "kv_bytes": 0, "regions": {},
                "frames_committed": self.frames_committed}
