"""Rollouts: one directory per episode with lossless frames, per-step actions, poses and timestamps.

    from reverie.engine.rollout import read_rollout, read_rollouts, RolloutWriter, RolloutMeta, RolloutError
    r = read_rollout("data/train/ep000")   # r.frames uint8 [T,H,W,3], r.actions int64 [T], r.poses [T,3]

See `engine.rollout.format` for the layout. Importing this package does not import PyAV or vizdoom.
"""

from reverie.engine.rollout.background import BackgroundRolloutWriter
from reverie.engine.rollout.format import TIME_FIELDS, RolloutError, RolloutMeta
from reverie.engine.rollout.reader import Rollout, read_rollout, read_rollouts, rollout_dirs
from reverie.engine.rollout.writer import RolloutWriter

__all__ = ["BackgroundRolloutWriter", "Rollout", "RolloutError", "RolloutMeta", "RolloutWriter", "TIME_FIELDS", "read_rollout",
           "read_rollouts", "rollout_dirs"]
