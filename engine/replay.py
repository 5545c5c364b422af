"""Regenerating a recorded session: its actions replayed through a `Session` from its seed frame.

A recording (`engine.recorder.Recorder`) holds the seed frame as row 0 (with the action committed with
it), the seed, memory policy and budget, the actions played before it began (`prefix_actions`) and the
torch thread count; with the same model they reproduce the recorded frames bit for bit. A row that
started a new scene (`extra.scene`) is replayed as that scene change, its frame given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reverie.engine.session import Session, default_memory_factory


def replay_session(rollout, model, *, memory_factory=None) -> Session:
    """A session in the state the recording started from: its seed frame, seed, policy and budget, with
    `prefix_actions` replayed (unrecorded). Sets the process-wide torch thread count to the recording's,
    since float reductions and so exact pixels depend on it."""
    import torch

    config = rollout.meta.config
    if config.get("torch_threads"):
        torch.set_num_threads(int(config["torch_threads"]))
    if tuple(rollout.meta.frame_shape) != tuple(model.spec.frame_shape):
        raise ValueError(f"the recording is {rollout.meta.frame_shape}, the model makes {model.spec.frame_shape}")
    if rollout.meta.action_space != model.spec.action_space:
        raise ValueError("the recording's action space is not the model's (a recording regenerates with the model "
                         "that made it)")
    session = Session(model, np.ascontiguousarray(rollout.frames[0]), policy=config.get("policy", "full"),
                      budget_bytes=config.get("budget_bytes"), seed=rollout.meta.seed,
                      memory_factory=memory_factory or default_memory_factory, seed_action=rollout.actions[0])
    for action in config.get("prefix_actions", []):
        session.step(action)
    return session


def regenerate(rollout, model, *, memory_factory=None, on_frame=None, out: str | Path | None = None) -> np.ndarray:
    """Replay a recorded session's actions through `model`; returns uint8 `[T - 1, H, W, 3]` frames that
    match rows 1.. of `rollout` when the recording is regenerable with this model (same seed -> same
    frames). `on_frame(t, frame)` sees each frame (row t); `out` records the regenerated session there."""
    session = replay_session(rollout, model, memory_factory=memory_factory)
    if out is not None:
        session.start_recording(out, fps=rollout.meta.fps)
    frames = np.empty((max(0, len(rollout) - 1), *model.spec.frame_shape), np.uint8)
    try:
        for t in range(1, len(rollout)):
            extra = rollout.extras[t]
            scene = extra.get("scene") if isinstance(extra, dict) else None
            if scene is not None:  # a new scene's frame: given, not generated
                pose = rollout.poses[t]
                session.scene(rollout.frames[t], scene, action=rollout.actions[t],
                              pose=None if np.isnan(pose).any() else pose)
                frames[t - 1] = rollout.frames[t]
            else:
                frames[t - 1] = session.step(rollout.actions[t]).frame
            if on_frame is not None:
                on_frame(t, frames[t - 1])
    finally:
        session.stop_recording()
    return frames
