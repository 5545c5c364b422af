"""Per-mode lazy `triton.jit`: compiled on CUDA, interpreted when `TRITON_INTERPRET=1` at launch time.

Triton decides between the compiler and its interpreter when a function is decorated. Decorating at launch
instead (once per mode) lets the interpreter tests and the compiled GPU tests share one process without the
environment variable leaking from one to the other. Kernels wrapped here must not call other `@triton.jit`
functions (a nested helper would be frozen in one mode), so they are written self-contained.
"""

from __future__ import annotations

from collections.abc import Callable

import triton


def interpreting() -> bool:
    return bool(triton.knobs.runtime.interpret)


class LazyKernel:
    """`kernel[grid](*args)` like a `triton.jit` function, decorated for the current mode on first use."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self._by_mode: dict[bool, object] = {}

    def __getitem__(self, grid):
        mode = interpreting()
        jitted = self._by_mode.get(mode)
        if jitted is None:
            jitted = self._by_mode[mode] = triton.jit(self.fn)
        return jitted[grid]


def lazy_jit(fn: Callable) -> LazyKernel:
    return LazyKernel(fn)
