"""What a live object graph really holds: the bytes of every tensor storage and array buffer it reaches.

`held_bytes(session, exclude=(model,))` walks attributes, slots, containers and modules from the roots,
counts each distinct storage once (a view counts its whole storage, so a slice that pins a larger buffer is
charged the larger buffer), and skips what `exclude` names (the shared model). It is the measurement that
`memory.footprint.session_bytes` is checked against; it is slow (a Python walk) and not for the hot path.
Python's own objects (dicts, lists, ints) are not counted: `python_bytes` estimates them separately.
"""

from __future__ import annotations

import sys
import types
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

_SCALARS = (str, bytes, bytearray, int, float, complex, bool, type(None), torch.dtype, torch.device, torch.Size)
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
         types.CodeType, torch.Generator)


@dataclass(frozen=True, slots=True)
class Held:
    """Bytes reachable from some roots: `storage` (tensor storages and array buffers, each once) and
    `python` (`sys.getsizeof` of the containers and objects walked, an estimate)."""

    storage: int
    python: int

    @property
    def total(self) -> int:
        return self.storage + self.python


def measure(*roots, exclude=()) -> Held:
    """Walk from `roots`, never entering an object in `exclude`; see the module docstring."""
    skip = {id(x) for x in exclude}
    seen: set[int] = set()
    buffers: dict[tuple, int] = {}
    python = 0
    todo = deque(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in skip or isinstance(obj, _SCALARS) or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            _tensor(obj, buffers)
            continue
        if isinstance(obj, np.ndarray):
            _array(obj, buffers)
            continue
        python += sys.getsizeof(obj)
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            todo.extend(obj)
        else:
            todo.extend(_attributes(obj))
    return Held(storage=sum(buffers.values()), python=python)


def held_bytes(*roots, exclude=()) -> int:
    """Tensor storage and array buffer bytes reachable from `roots` (each buffer once)."""
    return measure(*roots, exclude=exclude).storage


def _tensor(t: torch.Tensor, buffers: dict) -> None:
    if t.is_meta or t.layout != torch.strided:
        return
    s = t.untyped_storage()
    key = (t.device.type, t.device.index, s.data_ptr())
    buffers[key] = max(buffers.get(key, 0), s.nbytes())


def _array(a: np.ndarray, buffers: dict) -> None:
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    key = ("cpu", None, root.__array_interface__["data"][0])
    buffers[key] = max(buffers.get(key, 0), root.nbytes)


def _attributes(obj) -> list:
    out = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                out.append(getattr(obj, name))
    return out
