"""Named attention backends with declared constraints, chosen once per device type.

Backends (highest priority first): `flash-attn` (dense float spans on CUDA, no gather, no bias, no
quantized tiers), `torch` (the reference path; every device, every feature; scaled_dot_product_attention
underneath), `triton` (fused RoPE-at-read + gather + dequantize + bias + online softmax; CUDA, or the CPU
under `TRITON_INTERPRET=1`).

Choice, in order: `with attention_backend(name):` (a context variable), else the environment variable
`REVERIE_ATTN_BACKEND` (read once, at first use), else automatic: the first backend, by priority, that is
installed for the query's device type (so CUDA + flash-attn -> flash-attn, else torch). An explicitly named
backend that is not installed, or that cannot run a given view, raises `BackendError` with the reason;
automatic choice instead falls back, per call, to the next backend that can run the view.

Why `triton` attention is explicit only: on an NVIDIA H200 (`reverie bench kernels`, 2026-12-04) the fused
kernel ran at 0.17-0.18 of the dense throughput of torch's path, and its int8 gather + bias rows took
5.0-7.9 times torch's. The commit-time Triton kernels (quantization, scores) ran 1.9-3.7 times faster than
their references there, so `use_triton_for` keeps them on CUDA whenever triton is installed.

`triton` and `flash_attn` are imported only when a backend that needs them first runs, never at package
import.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from reverie.kernels.view import KVView

ENV_VAR = "REVERIE_ATTN_BACKEND"
AUTO = "auto"


class BackendError(RuntimeError):
    """A requested attention backend is unknown, not installed, or cannot run the given view."""


@dataclass(frozen=True, slots=True)
class Backend:
    """One attention implementation and what it can run.

    Attributes:
        name: registry name (`torch`, `triton`, `flash-attn`).
        target: `"module:function"` implementing `fn(q, view) -> out`, imported at first use.
        devices: device types it runs on (`"cpu"` only through an interpreter, see `interpreted`).
        dtypes: query dtypes it accepts.
        requires: Python modules that must be importable.
        quantized, index, bias: whether it reads int8/int4 tiers, gathered slots, per-slot logit bias.
        interpreted: on the CPU it needs `TRITON_INTERPRET=1` (set before `triton` is first imported).
        pow2_head_dim: if nonzero, the head dim must be a power of two at least this large.
        install_hint: shown when it is missing.
    """

    name: str
    target: str
    devices: frozenset[str]
    dtypes: frozenset[torch.dtype]
    requires: tuple[str, ...] = ()
    quantized: bool = True
    index: bool = True
    bias: bool = True
    interpreted: bool = False
    pow2_head_dim: int = 0
    install_hint: str = ""

    def missing(self, device_type: str) -> str | None:
        """Why this backend cannot run on `device_type` in this process, or None if it can."""
        for module in self.requires:
            if not _importable(module):
                hint = f" ({self.install_hint})" if self.install_hint else ""
                return f"attention backend '{self.name}' needs the Python package '{module}', which is not installed{hint}"
        if device_type not in self.devices:
            return f"attention backend '{self.name}' does not run on '{device_type}' (runs on: {', '.join(sorted(self.devices))})"
        if device_type == "cpu" and self.interpreted and not _interpret_enabled():
            return (
                f"attention backend '{self.name}' runs on the CPU only through the Triton interpreter; "
                "set TRITON_INTERPRET=1 (slow; meant for tests) or use 'torch'"
            )
        if device_type == "cpu" and self.interpreted and not interpreter_ready():
            return (
                f"attention backend '{self.name}': triton was imported before TRITON_INTERPRET=1 was set, so its "
                "interpreter cannot run here; set the variable before starting Python"
            )
        if device_type == "cuda" and not torch.cuda.is_available():
            return f"attention backend '{self.name}' needs CUDA, which is not available"
        return None

    def unsupported(self, q: torch.Tensor, view: KVView) -> str | None:
        """Why this backend cannot run this particular call, or None if it can."""
        if q.dtype not in self.dtypes:
            return f"attention backend '{self.name}' does not take {q.dtype} queries"
        d = q.shape[-1]
        if self.pow2_head_dim and (d < self.pow2_head_dim or d & (d - 1)):
            return f"attention backend '{self.name}' needs a power-of-two head dim >= {self.pow2_head_dim}, got {d}"
        for i, seg in enumerate(view.segments):
            if seg.bits and not self.quantized:
                return f"attention backend '{self.name}' cannot read quantized segment {i} (int{seg.bits})"
            if seg.index is not None and not self.index:
                return f"attention backend '{self.name}' cannot gather slots (segment {i} has an index)"
            if seg.bias is not None and not self.bias:
                return f"attention backend '{self.name}' cannot add a per-slot logit bias (segment {i})"
        return None

    def load(self) -> Callable[[torch.Tensor, KVView], torch.Tensor]:
        return _load_target(self.target)


_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Add (or replace) a backend; registration order is priority order for automatic choice."""
    _REGISTRY[backend.name] = backend
    _auto_choice.cache_clear()
    return backend


def backends() -> tuple[Backend, ...]:
    return tuple(_REGISTRY.values())


def get_backend(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BackendError(f"unknown attention backend '{name}' (choose from {', '.join(_REGISTRY)}, or '{AUTO}')") from None


_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("reverie_attn_backend", default=None)


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[Backend | None]:
    """Use backend `name` (or `"auto"`) inside the block; raises BackendError for an unknown name."""
    backend = None if name == AUTO else get_backend(name)
    token = _override.set(name)
    try:
        yield backend
    finally:
        _override.reset(token)


@functools.cache
def _env_choice() -> str:
    """`REVERIE_ATTN_BACKEND`, read once (call `reset()` after changing it in-process)."""
    name = os.environ.get(ENV_VAR, "").strip() or AUTO
    if name != AUTO:
        get_backend(name)
    return name


def requested() -> str:
    """The explicitly requested backend name, or `"auto"`."""
    return _override.get() or _env_choice()


@functools.cache
def _auto_choice(device_type: str) -> Backend:
    for backend in _REGISTRY.values():
        if backend.missing(device_type) is None and not (backend.interpreted and device_type == "cpu"):
            return backend
    return _REGISTRY["torch"]


def select(q: torch.Tensor, view: KVView) -> Backend:
    """The backend that runs `attend(q, view)` (see the module docstring for the rules)."""
    name = requested()
    device_type = q.device.type
    if name != AUTO:
        backend = get_backend(name)
        reason = backend.missing(device_type) or backend.unsupported(q, view)
        if reason:
            raise BackendError(f"{reason} (requested through {_source()})")
        return backend
    backend = _auto_choice(device_type)
    if backend.unsupported(q, view) is None:
        return backend
    for other in _REGISTRY.values():
        if other.missing(device_type) is None and other.unsupported(q, view) is None and not (other.interpreted and device_type == "cpu"):
            return other
    return _REGISTRY["torch"]


def use_triton_for(x: torch.Tensor) -> bool:
    """Whether commit-time ops (scores, quantization) on `x` should run their Triton kernels.

    Automatic: yes on a device where triton runs compiled (CUDA with triton installed; never the
    interpreter). Explicit: yes for `triton` (an error where it cannot run) and for `flash-attn` with
    triton available; the references otherwise (`torch` asks for the reference path throughout).
    """
    name = requested()
    triton = _REGISTRY["triton"]
    if name == AUTO:
        return x.device.type != "cpu" and triton.missing(x.device.type) is None
    if name == "triton":
        reason = triton.missing(x.device.type)
        if reason:
            raise BackendError(f"{reason} (requested through {_source()})")
        return True
    return name == "flash-attn" and triton.missing(x.device.type) is None


def reset() -> None:
    """Forget the cached choice (after changing `REVERIE_ATTN_BACKEND` or installing a package)."""
    _env_choice.cache_clear()
    _auto_choice.cache_clear()
    _importable.cache_clear()


def _source() -> str:
    return "attention_backend(...)" if _override.get() else f"{ENV_VAR}={os.environ.get(ENV_VAR, '')}"


@functools.cache
def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def interpreter_ready() -> bool:
    """Whether Triton's interpreter can run in this process: triton not imported yet, or imported while
    `TRITON_INTERPRET=1` (its standard library is then interpreted too). Never imports triton."""
    standard = sys.modules.get("triton.language.standard")
    return standard is None or type(getattr(standard, "sum", None)).__name__ == "InterpretedFunction"


def _interpret_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.cache
def _load_target(target: str) -> Callable:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


# Registration order is priority order for automatic choice.
_FLOATS = frozenset({torch.float32, torch.float16, torch.bfloat16})

register(Backend(
    name="flash-attn",
    target="reverie.kernels.flash:attend_flash",
    devices=frozenset({"cuda"}),
    dtypes=frozenset({torch.float16, torch.bfloat16}),
    requires=("flash_attn",),
    quantized=False,
    index=False,
    bias=False,
    install_hint="pip install flash-attn --no-build-isolation, on a CUDA machine",
))
register(Backend(
    name="torch",
    target="reverie.kernels.attend:attend_torch",
    devices=frozenset({"cpu", "cuda", "mps", "xpu"}),
    dtypes=_FLOATS | {torch.float64},
))
register(Backend(
    name="triton",
    target="reverie.kernels.fused.attention:attend_triton",
    devices=frozenset({"cuda", "cpu"}),
    dtypes=_FLOATS,
    requires=("triton",),
    interpreted=True,
    pow2_head_dim=16,
    install_hint="pip install triton; it ships with the CUDA builds of torch",
))
