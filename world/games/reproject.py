"""Camera reprojection of Doom frames: the next frame as the last one seen from the next eye position.

Doom draws a pinhole view without pitch or roll: a point `right` across, `ahead` along the view and
`up` above the eye lands at pixel `(cx + f * right / ahead, cy - f * up / ahead)`, with `f = (W / 2) /
tan(fov / 2)` for both axes (square pixels). Given the depth of every pixel of the frame to be predicted
and the eye's move between the two frames, each of its pixels can be traced back into the earlier frame
and sampled there: the flow a perfect world model would have to follow, parallax, view bob and all.

`reproject_grid` does that for a batch. It is an analysis tool (`reverie bench ceiling`): it needs the
game's depth buffer and eye positions, which no model gets at play time.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from reverie.world.pose import egocentric_motion

DEFAULT_FOV = 90.0
DEPTH_UNIT = 8.5
"""Map units per unit of ViZDoom's 8-bit depth buffer, as reprojection fits it best near the player
(`reverie bench ceiling` re-fits it on training-map episodes and reports the value)."""


def eye_motion(cam0, cam1):
    """The eye's move from `cam0` to `cam1` (`[..., 4]` = x, y, z, angle in degrees, numpy or torch) in
    `cam0`'s view: `[..., 4]` = (ahead, right, turn in degrees, counter-clockwise positive, up); the
    planar part is `world.pose.egocentric_motion`'s, with right = -left."""
    planar = [0, 1, 3]
    move = egocentric_motion(cam0[..., planar], cam1[..., planar])
    lib = torch if isinstance(cam0, torch.Tensor) else np
    return lib.stack([move[..., 0], -move[..., 1], move[..., 2], cam1[..., 2] - cam0[..., 2]], -1)


def reproject_grid(depth: torch.Tensor, motion: torch.Tensor, *, fov: float = DEFAULT_FOV,
                   depth_unit: float = DEPTH_UNIT) -> torch.Tensor:
    """Sampling grid that redraws a later frame from an earlier one.

    Args:
        depth: `[N, H, W]` depth buffer of the later frame (engine units; see `DEPTH_UNIT`).
        motion: `[N, 4]` the eye's move from the earlier frame to the later one, in the earlier frame's
            view (`eye_motion(cam_earlier, cam_later)`).
    Returns:
        `[N, H, W, 2]` grid for `torch.nn.functional.grid_sample(earlier, grid, align_corners=False)`.
    """
    n, h, w = depth.shape
    f = (w / 2) / math.tan(math.radians(fov) / 2)
    dist = depth.to(torch.float32).clamp_min(0.5) * depth_unit  # 0 = nearer than one unit
    u = torch.arange(w, dtype=torch.float32) + 0.5 - w / 2
    v = torch.arange(h, dtype=torch.float32) + 0.5 - h / 2
    right = u[None, None, :] * dist / f
    up = -v[None, :, None] * dist / f
    ahead_m, right_m, turn, up_m = (m[:, None, None] for m in motion.to(torch.float32).unbind(-1))
    # the point in the earlier view: rotate the later view's offsets by the turn, add the move
    c, s = torch.cos(turn * (math.pi / 180.0)), torch.sin(turn * (math.pi / 180.0))
    ahead0 = ahead_m + dist * c + right * s
    right0 = right_m - dist * s + right * c
    up0 = up_m + up
    ahead0 = ahead0.clamp_min(1.0)  # behind the earlier eye: nothing to sample, keep it finite
    x = right0 * f / ahead0
    y = -up0 * f / ahead0
    return torch.stack((x / (w / 2), y / (h / 2)), -1)
