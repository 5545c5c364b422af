"""Append-only rollout writer: crash-safe while recording, finalised by `close()`.

    with RolloutWriter(out_dir, RolloutMeta(source="game", seed=0, frame_shape=(48, 64, 3), map="maze")) as w:
        w.append(frame, action, pose=(x, y, angle), t_server_start_ns=..., extra={...})

`append` writes the frame bytes and one JSON line and flushes both to the OS, so a process killed at any
moment (even SIGKILL) leaves a prefix `read_rollout` loads. It costs tens of microseconds, but it does
block on the disk: a real-time loop should call it from a background thread (`BackgroundRolloutWriter`).
A writer is not thread-safe: one thread appends.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from reverie.engine.rollout.format import (FRAMES, FRAMES_PARTIAL, HEADER_BYTES, META, PREVIEW, STEPS, TIME_FIELDS,
                                   RolloutMeta, npy_header)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ClosingOnExit:
    """`with writer:` finalises on a clean exit (`close()`) and leaves a readable partial rollout when the
    block raises (`abort()`)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class RolloutWriter(ClosingOnExit):
    """Writes one rollout directory. `out_dir` must not exist or be empty.

    append(frame uint8 [H, W, 3], action (any form `meta.action_space.coerce` takes), pose (x, y, angle) | None, done=False, extra=None,
           name=None, **timestamps_ns) -> step index
    close(preview=True) -> dict summary (steps, frames_sha256, seconds spent on the preview)
    """

    def __init__(self, out_dir: str | Path, meta: RolloutMeta, *, fsync: bool = False) -> None:
        self.dir = Path(out_dir)
        if self.dir.exists() and any(self.dir.iterdir()):
            raise FileExistsError(f"{self.dir} already exists and is not empty; choose a new directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.fsync = fsync
        self._shape = meta.frame_shape
        self._frame_bytes = int(np.prod(self._shape))
        self._space = meta.action_space
        self._hash = hashlib.sha256()
        self._steps = 0
        self._closed = False
        _write_json_atomic(self.dir / META, {**meta.to_json(), "complete": False})
        self._frames = open(self.dir / FRAMES_PARTIAL, "wb", buffering=0)
        self._frames.write(npy_header(0, self._shape))
        self._lines = open(self.dir / STEPS, "w", buffering=1 << 16)

    @property
    def steps(self) -> int:
        return self._steps

    def append(self, frame: np.ndarray, action, pose=None, *, done: bool = False, extra: dict | None = None,
               **timestamps: int) -> int:
        """Record one step: the frame produced by `action`. Returns the step index."""
        if self._closed:
            raise RuntimeError("append() after close()")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != self._shape:
            raise ValueError(f"frame must be uint8 {self._shape}, got {frame.dtype} {frame.shape}")
        action = self._space.coerce(action)
        unknown = set(timestamps) - set(TIME_FIELDS)
        if unknown:
            raise ValueError(f"unknown timestamp field(s) {sorted(unknown)}; known: {TIME_FIELDS}")
        row = {"t": self._steps, "action": action if isinstance(action, int) else list(action),
               "name": self._space.label(action),
               "pose": None if pose is None else [float(v) for v in pose], "done": bool(done)}
        row["wall_ns"] = int(timestamps.pop("wall_ns", None) or time.time_ns())
        row.update({k: int(v) for k, v in timestamps.items() if v is not None})
        if extra:
            row["extra"] = extra
        data = memoryview(np.ascontiguousarray(frame)).cast("B")
        written = 0
        while written < len(data):  # unbuffered: in the OS page cache before the step line exists
            written += self._frames.write(data[written:])
        self._hash.update(data)
        self._lines.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._lines.flush()
        self._steps += 1
        return self._steps - 1

    def close(self, preview: bool = True, preview_scale: int | None = None) -> dict:
        """Finalise: frames.npy with the true count, complete meta.json, then (optionally) preview.mp4."""
        if self._closed:
            return self._summary
        self._closed = True
        self._lines.flush()
        os.fsync(self._lines.fileno()) if self.fsync else None
        self._lines.close()
        self._frames.seek(0)
        self._frames.write(npy_header(self._steps, self._shape))
        os.fsync(self._frames.fileno())
        self._frames.close()
        os.replace(self.dir / FRAMES_PARTIAL, self.dir / FRAMES)
        sha = self._hash.hexdigest()
        _write_json_atomic(self.dir / META, {**self.meta.to_json(), "complete": True, "steps": self._steps,
                                             "frames_sha256": sha, "preview": False})
        preview_s = 0.0
        if preview and self._steps:
            from reverie.engine.rollout.preview import write_preview

            t0 = time.perf_counter()
            frames = np.load(self.dir / FRAMES, mmap_mode="r")
            write_preview(self.dir / PREVIEW, frames, fps=self.meta.fps, scale=preview_scale)
            preview_s = time.perf_counter() - t0
            _write_json_atomic(self.dir / META, {**self.meta.to_json(), "complete": True, "steps": self._steps,
                                                 "frames_sha256": sha, "preview": True})
        self._summary = {"dir": str(self.dir), "steps": self._steps, "frames_sha256": sha, "preview_s": preview_s}
        return self._summary

    def abort(self) -> None:
        """Stop without finalising (what a crash leaves: a readable, partial rollout)."""
        if not self._closed:
            self._closed = True
            self._lines.close()
            self._frames.close()
            self._summary = {"dir": str(self.dir), "steps": self._steps, "frames_sha256": None, "preview_s": 0.0}

