"""The rollout directory format: names, metadata, and the fixed-size `.npy` header.

A rollout is one directory:

    meta.json            format, version, source, seed, map, fps, frame shape, action space (its
                         description, `controls`; and the action names of an index space), config
                         (and its sha256);
                         after a normal close also complete=true, steps, frames_sha256, preview
    frames.npy           uint8 [T, H, W, 3], lossless (while recording: frames.npy.partial, same layout)
    steps.jsonl          one JSON object per step, appended and flushed as each step is written
    preview.mp4          H.264 yuv420p preview, frames upscaled (written on close; optional)

Row t holds the frame produced by action t; row 0 is the first frame (the game's reset frame), recorded
with the action `noop` unless a caller says otherwise. A steps.jsonl row:

    {"t": 3, "action": 1, "name": "forward", "pose": [x, y, angle_deg] | null, "done": false,
     "wall_ns": ..., "t_client_send_ns": ..., "t_server_start_ns": ..., "t_server_end_ns": ...,
     "t_client_shown_ns": ..., "extra": {...}}

`action` is the action's index in an index space (Doom's), or its vector (buttons 0/1, then axes) in a
vector space; `name` is its readable label. Only `t`, `action`, `name`, `pose`, `done` and `wall_ns` are always present; the other timestamps are
optional (missing -> -1 when read) and `extra` carries per-step JSON such as cache statistics.

The frames file starts with a 128-byte `.npy` header reserved when recording begins, so frames are
appended in place and closing only rewrites the header with the final count and renames the file; a
recording killed at any point leaves frames and step rows that the reader trims to their common prefix.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from reverie.world.actions import DOOM_ACTIONS, ActionSpace

FORMAT = "reverie-rollout"
VERSION = 1

META = "meta.json"
FRAMES = "frames.npy"
FRAMES_PARTIAL = "frames.npy.partial"
STEPS = "steps.jsonl"
PREVIEW = "preview.mp4"

HEADER_BYTES = 128  # fixed .npy header size (a multiple of 64, as numpy aligns data)
REQUIRED_FIELDS = ("t", "action", "name", "pose", "done", "wall_ns")
#: Per-step timestamps (nanoseconds). `wall_ns` is filled by the writer; the others by the engine.
TIME_FIELDS = ("wall_ns", "t_client_send_ns", "t_server_start_ns", "t_server_end_ns", "t_client_shown_ns")
_SOURCE = re.compile(r"^(game|model:[\w.\-/]+)$")


class RolloutError(ValueError):
    """A rollout directory is missing, truncated, corrupt or inconsistent (the message says which file)."""


@dataclass(frozen=True)
class RolloutMeta:
    """What a rollout is: where frames came from and how to reproduce them.

    source: "game" (the real game) or "model:<name>"; seed: the episode seed; map: the map name (or None);
    fps: playback rate; frame_shape: (H, W, 3); config: any JSON-able settings (game config and
    exploration driver, or model, memory policy and budget...); action_space: the `ActionSpace` the
    actions are in (default: Doom's; a tuple of action names is accepted for Doom's, as old rollouts hold).
    """

    source: str
    seed: int
    frame_shape: tuple[int, int, int]
    map: str | None = None
    fps: float = 35.0
    config: dict = field(default_factory=dict)
    action_space: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not _SOURCE.match(self.source):
            raise ValueError(f"source must be 'game' or 'model:<name>', got {self.source!r}")
        shape = tuple(int(v) for v in self.frame_shape)
        if len(shape) != 3 or shape[2] != 3 or min(shape) <= 0:
            raise ValueError(f"frame_shape must be (H, W, 3), got {self.frame_shape}")
        object.__setattr__(self, "frame_shape", shape)
        if not self.fps > 0:
            raise ValueError("fps must be positive")
        object.__setattr__(self, "action_space", _space(self.action_space))

    @property
    def config_sha256(self) -> str:
        """sha256 of the config as canonical JSON (sorted keys): equal configs hash equal."""
        text = json.dumps(self.config, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "source": self.source, "seed": int(self.seed),
                "map": self.map, "fps": float(self.fps), "frame_shape": list(self.frame_shape),
                "dtype": "uint8", "action_space": list(self.action_space.names),
                "controls": self.action_space.describe(), "config": self.config,
                "config_sha256": self.config_sha256}

    @classmethod
    def from_json(cls, data: dict) -> "RolloutMeta":
        if data.get("format") != FORMAT:
            raise RolloutError(f"{META}: not a reverie rollout (format={data.get('format')!r})")
        if data.get("version") != VERSION:
            raise RolloutError(f"{META}: unsupported rollout version {data.get('version')!r} (this reader: {VERSION})")
        if data.get("dtype", "uint8") != "uint8":
            raise RolloutError(f"{META}: frames must be uint8, got {data.get('dtype')!r}")
        try:
            space = (ActionSpace.from_description(data["controls"]) if "controls" in data
                     else tuple(data.get("action_space") or ()))
            return cls(source=data["source"], seed=int(data["seed"]), frame_shape=tuple(data["frame_shape"]),
                       map=data.get("map"), fps=float(data.get("fps", 35.0)), config=dict(data.get("config") or {}),
                       action_space=space)
        except (KeyError, TypeError, ValueError) as exc:
            raise RolloutError(f"{META}: bad or missing field: {exc}") from None


def _space(space) -> ActionSpace:
    """The action space a rollout's actions are in: Doom's unless it says otherwise."""
    if space is None or isinstance(space, ActionSpace) and space == DOOM_ACTIONS:
        return DOOM_ACTIONS
    if isinstance(space, ActionSpace):
        return space
    names = tuple(space)
    if names in ((), DOOM_ACTIONS.names):
        return DOOM_ACTIONS
    raise ValueError(f"action names {list(names)[:4]}... are not Doom's; give the ActionSpace")


def npy_header(n_frames: int, frame_shape: tuple[int, int, int]) -> bytes:
    """A version-1.0 `.npy` header for uint8 [n, H, W, 3], padded to exactly HEADER_BYTES."""
    shape = (int(n_frames), *map(int, frame_shape))
    text = "{'descr': '|u1', 'fortran_order': False, 'shape': %r, }" % (shape,)
    room = HEADER_BYTES - 10
    if len(text) + 1 > room:
        raise ValueError(f"frame count {n_frames} does not fit the fixed header")
    text = text.ljust(room - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + text.encode("latin1")


def parse_npy_header(head: bytes) -> tuple[int, tuple[int, ...], str]:
    """(data offset, shape, descr) of a `.npy` v1/v2 header; raises RolloutError if it is not one."""
    if len(head) < 12 or head[:6] != b"\x93NUMPY":
        raise RolloutError("frames file: not a .npy file (bad magic)")
    major = head[6]
    if major == 1:
        n, start = struct.unpack("<H", head[8:10])[0], 10
    elif major in (2, 3):
        n, start = struct.unpack("<I", head[8:12])[0], 12
    else:
        raise RolloutError(f"frames file: unsupported .npy version {major}")
    if len(head) < start + n:
        raise RolloutError("frames file: truncated .npy header")
    try:
        d = ast.literal_eval(head[start:start + n].decode("latin1"))
        shape, descr, fortran = tuple(d["shape"]), d["descr"], d["fortran_order"]
    except Exception:
        raise RolloutError("frames file: unreadable .npy header") from None
    if fortran:
        raise RolloutError("frames file: Fortran-ordered arrays are not rollouts")
    return start + n, shape, descr
