"""Dead reckoning: a pose `(x, y, angle degrees)` advanced by one egocentric motion.

Models with a pose head report each frame's motion as `(forward, left, dangle)` in the heading of the
frame before it (`world.dit.data.pose_deltas` computes these from real poses); this is the inverse.
"""

from __future__ import annotations

import math


def advance_pose(pose: tuple[float, float, float], forward: float, left: float,
                 dangle: float) -> tuple[float, float, float]:
    """Move `forward`/`left` map units in the current heading, then turn by `dangle` degrees (wrapped to [0, 360))."""
    x, y, a = pose
    rad = math.radians(a)
    return (x + forward * math.cos(rad) - left * math.sin(rad), y + forward * math.sin(rad) + left * math.cos(rad),
            (a + dangle) % 360.0)
