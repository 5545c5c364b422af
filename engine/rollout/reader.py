"""Read and validate a rollout directory (finished, or a prefix left by a killed recording)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reverie.engine.rollout.format import (FRAMES, FRAMES_PARTIAL, META, PREVIEW, REQUIRED_FIELDS, STEPS, TIME_FIELDS,
                                   RolloutError, RolloutMeta, parse_npy_header)


@dataclass
class Rollout:
    """A loaded rollout. T = number of steps (rows).

    frames: uint8 [T, H, W, 3]     (frame t was produced by action t; row 0 is the first frame)
    actions: int64 [T] | float32 [T, dim]   in `meta.action_space` (`ActionSpace.array`): indices into
                                   Doom's (or another index space), or vectors of a vector space
    poses: float64 [T, 3]          (x, y, angle_degrees); NaN where the source had no pose
    done: bool [T]                 the episode ended at this step
    times: {name: int64 [T]}       TIME_FIELDS in nanoseconds; -1 where a step did not record it
    extras: list[dict | None]      per-step extra JSON (e.g. cache statistics)
    complete: False when read from an unfinished recording (the longest consistent prefix)
    """

    path: Path
    meta: RolloutMeta
    frames: np.ndarray
    actions: np.ndarray
    poses: np.ndarray
    done: np.ndarray
    times: dict[str, np.ndarray]
    extras: list
    complete: bool
    frames_sha256: str
    has_preview: bool = False
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def steps(self) -> int:
        return len(self)

    @property
    def action_names(self) -> list[str]:
        space = self.meta.action_space
        return [space.label(v) for v in space.coerce_many(self.actions)]

    def summary(self) -> dict:
        """The JSON-able summary `reverie inspect --json` prints."""
        return {"path": str(self.path), "steps": self.steps, "frame_shape": list(self.frames.shape[1:]),
                "frames_sha256": self.frames_sha256, "actions": self.action_names, "source": self.meta.source,
                "seed": self.meta.seed, "map": self.meta.map, "fps": self.meta.fps,
                "complete": self.complete, "status": "complete" if self.complete else "partial",
                "preview": self.has_preview, "config": self.meta.config}


def _read_meta(path: Path) -> tuple[RolloutMeta, dict]:
    if not path.is_dir():
        raise RolloutError(f"{path}: no such rollout directory")
    try:
        raw = json.loads((path / META).read_text())
    except FileNotFoundError:
        episodes = sorted(p.name for p in path.iterdir() if (p / META).exists())
        if episodes:
            raise RolloutError(f"{path}: a folder of {len(episodes)} rollouts ({', '.join(episodes[:3])}"
                               f"{', ...' if len(episodes) > 3 else ''}); give one of them") from None
        raise RolloutError(f"{path}: missing {META} (not a rollout, or the recording never started)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RolloutError(f"{path / META}: corrupt JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise RolloutError(f"{path / META}: expected a JSON object")
    return RolloutMeta.from_json(raw), raw


def _parse_action(a, name, space):
    """The action value of a step row (its index, or its vector), checked against its name."""
    if space.encoding == "index":
        if not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < len(space):
            raise ValueError(f"bad action {a!r}")
        if name != space.names[a]:
            raise ValueError(f"action name {name!r} does not match index {a} ({space.names[a]!r})")
        return a
    if not isinstance(a, list) or len(a) != space.dim or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in a):
        raise ValueError(f"bad action {str(a)[:40]}: a vector of {space.dim} numbers")
    value = space.coerce(a)
    if tuple(float(v) for v in a) != value:
        raise ValueError(f"action {str(a)[:40]} is outside the action space (buttons 0/1, axes in range)")
    return value


def _parse_row(line: str, t: int, space) -> dict:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED_FIELDS if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    if row["t"] != t:
        raise ValueError(f"step index {row['t']} where {t} was expected")
    row["action"] = _parse_action(row["action"], row["name"], space)
    pose = row["pose"]
    if pose is not None and (not isinstance(pose, list) or len(pose) != 3
                             or not all(isinstance(v, (int, float)) for v in pose)):
        raise ValueError(f"bad pose {pose!r}")
    return row


def _read_steps(path: Path, meta: RolloutMeta, strict: bool) -> list[dict]:
    """All rows (strict: any bad row is an error) or the rows before the first bad one."""
    try:
        text = (path / STEPS).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise RolloutError(f"{path}: missing {STEPS}") from None
    lines = text.split("\n")
    torn_tail = lines[-1] != ""  # the last line has no newline: a write cut short
    lines = lines[:-1] if not torn_tail else lines
    rows = []
    for t, line in enumerate(lines):
        try:
            if torn_tail and t == len(lines) - 1:
                raise ValueError("line is cut short (no newline)")
            rows.append(_parse_row(line, t, meta.action_space))
        except (ValueError, TypeError) as exc:
            if strict:
                raise RolloutError(f"{path / STEPS}: line {t + 1} is corrupt: {exc}") from None
            break
    return rows


def _open_frames(path: Path, meta: RolloutMeta, complete: bool) -> tuple[Path, int, int]:
    """(file, data offset, whole frames available)."""
    final, partial = path / FRAMES, path / FRAMES_PARTIAL
    file = final if (complete or final.exists()) else partial
    if not file.exists():
        raise RolloutError(f"{path}: missing {FRAMES}" + ("" if complete else f" (and {FRAMES_PARTIAL})"))
    with open(file, "rb") as f:
        head = f.read(4096)
    offset, shape, descr = parse_npy_header(head)
    if descr not in ("|u1", "u1", "<u1", ">u1"):
        raise RolloutError(f"{file}: frames must be uint8, got dtype {descr!r}")
    if tuple(shape[1:]) != meta.frame_shape or len(shape) != 4:
        raise RolloutError(f"{file}: frame shape {tuple(shape[1:])} does not match {META} {meta.frame_shape}")
    frame_bytes = int(np.prod(meta.frame_shape))
    available = (os.path.getsize(file) - offset) // frame_bytes
    if complete:
        if os.path.getsize(file) - offset != shape[0] * frame_bytes:
            raise RolloutError(f"{file}: truncated or padded: header says {shape[0]} frames, "
                               f"the file holds {(os.path.getsize(file) - offset) / frame_bytes:.2f}")
        available = shape[0]
    return file, offset, available


def read_rollout(path: str | Path, *, mmap: bool = False, verify: bool = True) -> Rollout:
    """Load and validate one rollout directory; raises `RolloutError` saying what is wrong.

    A finished rollout must be whole and consistent (frame count, step rows, sha256 of the frames when
    `verify`). An unfinished one (the recorder was killed) loads as its longest consistent prefix with
    `complete=False`. `mmap=True` maps the frames instead of reading them into memory.
    """
    path = Path(path)
    meta, raw = _read_meta(path)
    complete = bool(raw.get("complete"))
    rows = _read_steps(path, meta, strict=complete)
    file, offset, n_frames = _open_frames(path, meta, complete)
    if complete:
        if n_frames != raw.get("steps") or len(rows) != raw.get("steps"):
            raise RolloutError(f"{path}: {META} says {raw.get('steps')} steps, found {n_frames} frames and "
                               f"{len(rows)} step rows")
    n = min(n_frames, len(rows))
    rows = rows[:n]
    shape = (n, *meta.frame_shape)
    if n == 0:
        frames = np.zeros(shape, np.uint8)
    elif mmap:
        frames = np.memmap(file, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    else:
        with open(file, "rb") as f:
            f.seek(offset)
            buf = f.read(n * int(np.prod(meta.frame_shape)))
        frames = np.frombuffer(buf, np.uint8).reshape(shape)
    sha = hashlib.sha256(np.ascontiguousarray(frames).reshape(-1)).hexdigest() \
        if (verify or not complete) else raw.get("frames_sha256")
    if complete and verify and sha != raw.get("frames_sha256"):
        raise RolloutError(f"{file}: frames do not match the sha256 in {META} (corrupt frames)")
    poses = np.array([r["pose"] if r["pose"] is not None else [np.nan] * 3 for r in rows], np.float64).reshape(n, 3)
    times = {k: np.array([int(r.get(k, -1)) for r in rows], np.int64) for k in TIME_FIELDS}
    return Rollout(path=path, meta=meta, frames=frames, actions=meta.action_space.array([r["action"] for r in rows]),
                   poses=poses, done=np.array([bool(r["done"]) for r in rows], bool), times=times,
                   extras=[r.get("extra") for r in rows], complete=complete, frames_sha256=sha,
                   has_preview=(path / PREVIEW).exists(), info={"rows_in_file": len(rows), "frames_in_file": n_frames})


def rollout_dirs(path: str | Path) -> list[Path]:
    """The rollout directories at `path`: itself if it is one, else its subdirectories that are (sorted),
    e.g. the ep000, ep001, ... that `reverie record --episodes K` writes."""
    path = Path(path)
    if (path / META).exists():
        return [path]
    if not path.is_dir():
        raise RolloutError(f"{path}: no such directory")
    found = sorted(p for p in path.iterdir() if p.is_dir() and (p / META).exists())
    if not found:
        raise RolloutError(f"{path}: neither a rollout nor a folder of rollouts")
    return found


def read_rollouts(path: str | Path, **kw) -> list[Rollout]:
    """Every rollout under `path` (see `rollout_dirs`), each validated by `read_rollout`."""
    return [read_rollout(p, **kw) for p in rollout_dirs(path)]
