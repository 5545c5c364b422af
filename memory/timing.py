"""`SectionTimer`: wall time of a memory policy's own work per named section (scoring, compaction,
archive, retrieval, merging, head profiling), when switched on.

Off by default: the timer is then a shared no-op context. On a GPU each section synchronises the device
before and after, so it is meant for the CPU benches (`reverie bench memory` reports it as `overhead_ms`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext

import torch

_UNTIMED = nullcontext()


class SectionTimer:
    """`with timer("score"): ...` adds the block's wall seconds to `timings["score"]` when `enabled`."""

    def __init__(self, device) -> None:
        self.device = torch.device(device)
        self.enabled = False
        self.timings: dict[str, float] = {}

    def __call__(self, name: str):
        return self._time(name) if self.enabled else _UNTIMED

    @contextmanager
    def _time(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
