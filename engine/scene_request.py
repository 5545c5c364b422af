"""Checking a player's scene change (control op `scene`) before anything is built.

The message: `Control(op="scene", value=...)`, where `value` is None or a map with any of
`handling` ("flush" | "cut" | "recache"; absent: the session's policy decides), `place` (a place the
server knows how to show, e.g. a map of the real game; absent: the server's next place) and `pose`
(`[x, y, angle_degrees]`, where the new scene is, for pose retrieval). The new frame comes as the
message's one payload part (uint8 `H x W x 3`, the model's frame shape), or, without one, from the
server's places (`Server(scene_frame=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reverie.engine import protocol as P
from reverie.engine.hello import frame_part
from reverie.memory.events import SCENE_HANDLINGS


@dataclass(frozen=True, slots=True)
class SceneRequest:
    """A checked scene change: `frame` (a view of the payload part), or `place` for the server to show."""

    frame: np.ndarray | None
    place: str | None
    handling: str | None
    pose: tuple[float, float, float] | None


def check_scene(value, extra, frame_shape) -> SceneRequest:
    """A `SceneRequest` for a `scene` control's `value` and payload parts `extra`, or `ProtocolError`."""
    value = {} if value is None else value
    if not isinstance(value, dict) or set(value) - {"handling", "place", "pose"}:
        raise P.ProtocolError("bad_field", "control 'scene' takes a map of handling, place and pose")
    handling, place, pose = value.get("handling"), value.get("place"), value.get("pose")
    if handling is not None and handling not in SCENE_HANDLINGS:
        raise P.ProtocolError("bad_field", f"scene handling must be one of {list(SCENE_HANDLINGS)}")
    if place is not None and (not isinstance(place, str) or not 0 < len(place) <= P.MAX_STR):
        raise P.ProtocolError("bad_field", "scene place must be a name")
    if pose is not None:
        if (not isinstance(pose, (list, tuple)) or len(pose) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in pose)):
            raise P.ProtocolError("bad_field", "scene pose must be [x, y, angle_degrees]")
        pose = tuple(float(v) for v in pose)
    if len(extra) > 1:
        raise P.ProtocolError("malformed", "a scene carries at most one frame part")
    frame = None
    if extra:
        if place is not None:
            raise P.ProtocolError("bad_field", "a scene names a place or sends a frame, not both")
        frame = frame_part(extra[0], frame_shape, "scene frame")
    return SceneRequest(frame=frame, place=place, handling=handling, pose=pose)
