"""Recording a session into the rollout format, off the hot path.

The server's loop only hands rows over (`append`, `shown`: microseconds); the writing, the finalisation
and the preview encode happen on the thread of an `engine.rollout.BackgroundRolloutWriter`, so disk
never stalls play. Row 0 of the rollout is the session's seed frame (with the action committed with it,
`noop` unless the session was started mid-episode), rows 1.. are the generated frames and the frames that
started a new scene (`extra.scene` names how the memory handled it, `Session.scene`), with their
actions, poses and timestamps (client send, server start/end, client shown). A row is handed to the
writer once the client reports the frame shown, or after `hold` newer frames arrived without that report,
so a recording killed at any moment leaves a readable prefix (minus at most `hold` rows and what the
writer's queue held).

`meta.json` holds what regeneration (`engine.replay.regenerate`) needs: the model name and hashes, seed,
policy and budget, and `prefix_actions` (the actions played after the seed frame before the recording
began), plus `regenerable` (false if the seed, policy or budget changed live before or during the
recording). The recorder only observes a session: it is handed `StepResult`s and imports nothing from
`engine.session`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np

from reverie.engine.rollout import BackgroundRolloutWriter, RolloutMeta

def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()  # float reductions (and so exact pixels) depend on it


def model_identity(model) -> dict:
    """Name plus hashes that pin a model: its spec, and its config/weights hashes when it declares them."""
    spec = model.spec
    spec_text = repr(spec)
    out = {"model": spec.name, "spec_hash": hashlib.sha256(spec_text.encode()).hexdigest()[:16]}
    meta = getattr(model, "meta", None)
    meta = meta if isinstance(meta, dict) else {}
    for attr in ("config_hash", "weights_hash", "checkpoint_sha256"):
        value = getattr(model, attr, None) or meta.get(attr)
        if callable(value):
            value = value()
        if isinstance(value, str):
            out[attr] = value
    return out


class Recorder:
    """Records one session to `path` through a background writer.

    Args:
        path: the rollout directory to create.
        model: the session's model (for identity and hashes).
        seed_frame: uint8 `[H, W, 3]`, row 0, with `seed_action`.
        seed, policy, budget_bytes: the session's settings.
        prefix_actions: actions the session played before this recording started.
        regenerable: whether the prefix plus the recorded actions reproduce the frames.
        fps: playback rate of the recording and its preview (default: the model's real-time rate,
            `spec.real_time_fps`, so a replay runs at the game's speed).
    """

    def __init__(self, path: str | Path, model, *, seed_frame: np.ndarray, seed: int, policy: str,
                 budget_bytes: int | None, prefix_actions=(), regenerable: bool = True,
                 fps: float | None = None, hold: int = 4, preview: bool = True, seed_action=None):
        self.path = Path(path)
        space = model.spec.action_space
        seed_action = space.noop if seed_action is None else space.coerce(seed_action)
        config = {**model_identity(model), "policy": policy, "budget_bytes": budget_bytes,
                  "chunk_frames": model.spec.chunk_frames, "prefix_actions": [space.to_wire(space.coerce(a)) for a in prefix_actions],
                  "regenerable": bool(regenerable), "row0": "seed frame", "torch_threads": _torch_threads()}
        config["config_hash"] = config.get("config_hash") or hashlib.sha256(
            json.dumps({k: config[k] for k in ("model", "spec_hash", "policy", "budget_bytes")}, sort_keys=True).encode()
        ).hexdigest()[:16]
        meta = RolloutMeta(source=f"model:{model.spec.name}", seed=int(seed), frame_shape=tuple(model.spec.frame_shape),
                           fps=model.spec.real_time_fps if fps is None else fps, config=config,
                           action_space=space)
        self._writer = BackgroundRolloutWriter(self.path, meta, copy_frames=False)  # session frames are never reused
        self._writer.append(np.ascontiguousarray(seed_frame), seed_action, None, t_server_end_ns=time.monotonic_ns())
        self._hold = hold
        self._preview = preview
        self._pending: dict[int, dict] = {}
        self._order: deque[int] = deque()
        self._closing = False

    @property
    def summary(self) -> dict | None:
        return self._writer.summary

    @property
    def error(self) -> BaseException | None:
        return self._writer.error

    @property
    def running(self) -> bool:
        return self._writer.running

    # --- called from the server loop (cheap) ---------------------------------------------------------
    def append(self, result, *, seq: int, t_client_ns: int = 0, kv_bytes: int | None = None) -> None:
        """Take one generated frame (`engine.session.StepResult`); the frame array is not copied."""
        if self._closing:
            return
        self._pending[seq] = {"r": result, "t_client_send_ns": t_client_ns, "kv": kv_bytes}
        self._order.append(seq)
        while len(self._order) > self._hold:
            self._write(self._order.popleft())

    def shown(self, seq: int, t_ns: int) -> None:
        """The client displayed the frame answering action `seq` at `t_ns`."""
        if self._closing or seq not in self._pending:
            return
        self._pending[seq]["t_client_shown_ns"] = t_ns
        while self._order and "t_client_shown_ns" in self._pending.get(self._order[0], {}):
            self._write(self._order.popleft())

    def scene(self, frame: np.ndarray, handling: str, action, pose) -> None:
        """A new scene's frame (`engine.session.Session.scene`): written as a row of its own after every row
        held so far, with `extra.scene` = the handling, so a regeneration replays the scene change."""
        if self._closing:
            return
        self._write_held()
        try:
            self._writer.append(frame, action, pose, extra={"scene": handling}, t_server_end_ns=time.monotonic_ns())
        except RuntimeError:
            pass  # the writer failed meanwhile: logged there, kept in `error`

    def close(self, wait: bool = True, timeout: float = 60.0, regenerable: bool = True) -> dict | None:
        """Finish: hand over every held row, finalise the rollout and its preview on the writer's thread
        (waiting up to `timeout` with `wait`). `regenerable=False` marks a recording during which a live
        event (seed, policy, budget, flush) changed the course. Never raises: a writer error is logged and
        kept in `error`."""
        if not self._closing:
            self._write_held()
            self._closing = True
            if not regenerable:
                meta = self._writer.meta
                self._writer.meta = replace(meta, config={**meta.config, "regenerable": False})
            self._writer.close(preview=self._preview, wait=False)
        if wait:
            try:
                self._writer.close(timeout=timeout)
            except RuntimeError:
                pass  # logged by the writer, kept in `error`
        return self.summary

    def _write_held(self) -> None:
        """Hand every held row to the writer, oldest first."""
        while self._order:
            self._write(self._order.popleft())

    def _write(self, seq: int) -> None:
        p = self._pending.pop(seq, None)
        if p is None or self.error is not None:  # a repeated seq, or the writer failed (logged there)
            return
        r = p["r"]
        times = {"t_client_send_ns": p["t_client_send_ns"] or None, "t_server_start_ns": r.t_start_ns,
                 "t_server_end_ns": r.t_end_ns, "t_client_shown_ns": p.get("t_client_shown_ns")}
        extra = {"seq": seq, "index": r.index}
        if p["kv"] is not None:
            extra["kv_bytes"] = int(p["kv"])
        try:
            self._writer.append(r.frame, r.action, r.pose, extra=extra, **times)
        except RuntimeError:
            pass  # the writer failed meanwhile: logged there, kept in `error`
