"""Egocentric motion: the move between two poses `(x, y, angle degrees)` in the first one's heading,
and dead reckoning, its inverse.

Models with a pose head report each frame's motion as `(forward, left, dangle)` in the heading of the
frame before it (`world.dit.data.pose_deltas` computes these from real poses with `egocentric_motion`);
`advance_pose` moves a pose by one such motion.
"""

from __future__ import annotations

import math

import numpy as np


def egocentric_motion(pose0, pose1):
    """The move from `pose0` to `pose1` (`[..., 3]` = x, y, angle in degrees; numpy arrays or torch tensors)
    in `pose0`'s heading: `[..., 3]` = (forward, left, dangle in degrees wrapped to [-180, 180))."""
    if type(pose0).__module__.startswith("torch"):
        import torch as lib
    else:
        lib = np
    a = pose0[..., 2] * (math.pi / 180.0)
    dx, dy = pose1[..., 0] - pose0[..., 0], pose1[..., 1] - pose0[..., 1]
    dangle = (pose1[..., 2] - pose0[..., 2] + 180.0) % 360.0 - 180.0
    return lib.stack([dx * lib.cos(a) + dy * lib.sin(a), -dx * lib.sin(a) + dy * lib.cos(a), dangle], -1)


def advance_pose(pose: tuple[float, float, float], forward: float, left: float,
                 dangle: float) -> tuple[float, float, float]:
    """Move `forward`/`left` map units in the current heading, then turn by `dangle` degrees (wrapped to [0, 360))."""
    x, y, a = pose
    rad = math.radians(a)
    return (x + forward * math.cos(rad) - left * math.sin(rad), y + forward * math.sin(rad) + left * math.cos(rad),
            (a + dangle) % 360.0)
