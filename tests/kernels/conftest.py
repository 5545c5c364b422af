"""Kernel tests: make Triton's interpreter usable in this process without leaking it to other tests.

Triton decides between its compiler and its interpreter when a function is decorated, including its own
standard library (`tl.sum`, `tl.max`, ...) at `import triton`. On a machine without CUDA, compiled Triton
cannot run at all, so if triton is not imported yet we import it once with `TRITON_INTERPRET=1` and then
restore the environment: the variable itself is only set inside the interpreter tests (see
`interpreted` fixture in test_fused.py), and `kernels.fused` kernels pick their mode at launch. Elsewhere
(CUDA present, or triton already imported compiled) the interpreter tests rerun in a subprocess, and
test_compile.py (which needs triton imported in compiled mode) reruns in one when the interpreter won.
"""

import importlib.util
import os
import sys

import torch


def _preload_interpreted_triton() -> None:
    if "triton" in sys.modules or torch.cuda.is_available() or importlib.util.find_spec("triton") is None:
        return
    if os.environ.get("REVERIE_TRITON_COMPILED") == "1":  # test_compile.py's subprocess wants the compiler
        return
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    finally:
        if before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = before


_preload_interpreted_triton()
