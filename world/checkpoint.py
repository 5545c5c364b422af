"""Local safetensors checkpoints for world models: load with clear errors, never fetch anything.

A checkpoint is `NAME.safetensors` (tensors + string metadata) and, beside it, `NAME.json` (the model
config, its hash, how the weights were made). `load_state` checks that the file exists, parses, and holds
exactly the tensors (names and shapes) the model expects, and raises `CheckpointError` otherwise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_state(path: str | Path, state: dict[str, torch.Tensor], metadata: dict, *, dtype: torch.dtype | None = None) -> Path:
    """Write `state` to `path` (.safetensors) and `metadata` (+ the file's sha256) to the .json beside it.

    Floating tensors are cast to `dtype` when given (fp16 halves the file). Writes go to a temporary name
    first and are renamed, so an interrupted save never leaves a half-written checkpoint under `path`.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"json": json.dumps(metadata, sort_keys=True)})
    tmp.replace(path)
    meta = dict(metadata, sha256=sha256_file(path), file=path.name)
    json_path = path.with_suffix(".json")
    tmp_json = json_path.with_name(json_path.name + ".tmp")
    tmp_json.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp_json.replace(json_path)
    return path


def read_metadata(path: str | Path) -> dict:
    """The metadata stored inside a safetensors checkpoint (raises `CheckpointError` if unreadable)."""
    path = _existing(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("json", "{}")
        return json.loads(raw)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from exc


def load_state(path: str | Path, expected: dict[str, torch.Size], *, dtype: torch.dtype | None = torch.float32) -> dict[str, torch.Tensor]:
    """Load tensors from `path`, checking names and shapes against `expected` (e.g. a module's state).
    Floating tensors are cast to `dtype` (None keeps the stored dtype).

    Raises:
        CheckpointError: missing file, truncated/garbage bytes, missing or unexpected tensors, wrong shapes.
    """
    path = _existing(path)
    try:
        from safetensors.torch import load_file

        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from exc
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing tensors {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}"
                              f"{'...' if len(unexpected) > 5 else ''}")
    wrong = [f"{n}: checkpoint {tuple(state[n].shape)} vs model {tuple(s)}"
             for n, s in expected.items() if tuple(state[n].shape) != tuple(s)]
    if wrong:
        raise CheckpointError(f"checkpoint {path} does not match the model's shapes: " + "; ".join(wrong[:5]))
    return {n: (t.to(dtype) if dtype is not None and t.is_floating_point() else t) for n, t in state.items()}


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path
