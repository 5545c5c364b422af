"""Recording a session into the rollout format, off the hot path.

The server's loop only puts references on a queue (`append`, `shown`: microseconds); a background thread
owns the `RolloutWriter`, so disk writes and the preview encode never stall play. Row 0 of the rollout is
the session's seed frame (action `noop`), rows 1.. are the generated frames with their actions, poses and
timestamps (client send, server start/end, client shown). A row is written once the client reports the
frame shown, or after `hold` newer frames arrived without that report, so a recording killed at any
moment leaves a readable prefix (minus at most `hold` rows).

`meta.json` holds what regeneration needs: the model name and hashes, seed, policy and budget, and
`prefix_actions` (the actions played after the seed frame before the recording began), plus `regenerable`
(false if the seed, policy or budget changed live before or during the recording).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.rollout import RolloutMeta, RolloutWriter

log = logging.getLogger("reverie.recorder")
_STOP = object()


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
    """Records one session to `path` from a background thread.

    Args:
        path: the rollout directory to create.
        model: the session's model (for identity and hashes).
        seed_frame: uint8 `[H, W, 3]`, row 0.
        seed, policy, budget_bytes: the session's settings.
        prefix_actions: actions the session played before this recording started.
        regenerable: whether the prefix plus the recorded actions reproduce the frames.
        fps: playback rate of the recording and its preview (default: the model's real-time rate,
            `spec.real_time_fps`, so a replay runs at the game's speed).
    """

    def __init__(self, path: str | Path, model, *, seed_frame: np.ndarray, seed: int, policy: str,
                 budget_bytes: int | None, prefix_actions: list[int] = (), regenerable: bool = True,
                 fps: float | None = None, hold: int = 4, preview: bool = True):
        self.path = Path(path)
        config = {**model_identity(model), "policy": policy, "budget_bytes": budget_bytes,
                  "chunk_frames": model.spec.chunk_frames, "prefix_actions": [int(a) for a in prefix_actions],
                  "regenerable": bool(regenerable), "row0": "seed frame", "torch_threads": _torch_threads()}
        config["config_hash"] = config.get("config_hash") or hashlib.sha256(
            json.dumps({k: config[k] for k in ("model", "spec_hash", "policy", "budget_bytes")}, sort_keys=True).encode()
        ).hexdigest()[:16]
        meta = RolloutMeta(source=f"model:{model.spec.name}", seed=int(seed), frame_shape=tuple(model.spec.frame_shape),
                           fps=model.spec.real_time_fps if fps is None else fps, config=config,
                           action_space=tuple(model.spec.action_space.names))
        self._writer = RolloutWriter(self.path, meta)
        self._writer.append(np.ascontiguousarray(seed_frame), 0, None, t_server_end_ns=time.monotonic_ns())
        self._hold = hold
        self._preview = preview
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[int, dict] = {}
        self._order: list[int] = []
        self.summary: dict | None = None
        self.error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"recorder:{self.path.name}", daemon=True)
        self._thread.start()

    # --- called from the server loop (cheap) ---------------------------------------------------------
    def append(self, result, *, seq: int, t_client_ns: int = 0, kv_bytes: int | None = None) -> None:
        """Queue one generated frame (`engine.session.StepResult`); the frame array is not copied."""
        if not self._closing:
            self._q.put(("step", seq, result, t_client_ns, kv_bytes))

    def shown(self, seq: int, t_ns: int) -> None:
        """The client displayed the frame answering action `seq` at `t_ns`."""
        if not self._closing:
            self._q.put(("shown", seq, t_ns))

    def close(self, wait: bool = True, timeout: float = 60.0, regenerable: bool = True) -> dict | None:
        """Finish: write every queued row, finalise the rollout and its preview. `regenerable=False` marks
        a recording during which a live event (seed, policy, budget, flush) changed the course."""
        if not self._closing:
            if not regenerable:
                meta = self._writer.meta
                self._writer.meta = replace(meta, config={**meta.config, "regenerable": False})
            self._closing = True
            self._q.put(_STOP)
        if wait:
            self._thread.join(timeout)
        return self.summary

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # --- the writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    break
                if item[0] == "step":
                    _, seq, r, t_client, kv = item
                    self._pending[seq] = {"r": r, "t_client_send_ns": t_client, "kv": kv}
                    self._order.append(seq)
                    while len(self._order) > self._hold:
                        self._write(self._order.pop(0))
                elif item[1] in self._pending:
                    self._pending[item[1]]["t_client_shown_ns"] = item[2]
                    while self._order and "t_client_shown_ns" in self._pending[self._order[0]]:
                        self._write(self._order.pop(0))
            while self._order:
                self._write(self._order.pop(0))
            self.summary = self._writer.close(preview=self._preview)
        except BaseException as exc:  # keep what is on disk readable; report instead of dying silently
            self.error = exc
            log.exception("recording to %s failed", self.path)
            self._writer.abort()

    def _write(self, seq: int) -> None:
        p = self._pending.pop(seq)
        r = p["r"]
        times = {"t_client_send_ns": p["t_client_send_ns"] or None, "t_server_start_ns": r.t_start_ns,
                 "t_server_end_ns": r.t_end_ns, "t_client_shown_ns": p.get("t_client_shown_ns")}
        extra = {"seq": seq, "index": r.index}
        if p["kv"] is not None:
            extra["kv_bytes"] = int(p["kv"])
        self._writer.append(r.frame, r.action, r.pose, extra=extra, **times)


def regenerate(rollout, model, *, memory_factory=None, on_frame=None) -> np.ndarray:
    """Replay a recorded session's actions through `model`; returns uint8 `[T - 1, H, W, 3]` frames that
    match rows 1.. of `rollout` when the recording is regenerable with this model (same seed -> same
    frames). Row 0 (the seed frame) starts the session; `prefix_actions` are replayed first, unrecorded.
    Uses the recording's torch thread count (it sets the process-wide value), since float reductions and
    so exact pixels depend on it."""
    import torch

    from engine.session import Session, default_memory_factory

    config = rollout.meta.config
    if config.get("torch_threads"):
        torch.set_num_threads(int(config["torch_threads"]))
    if tuple(rollout.meta.frame_shape) != tuple(model.spec.frame_shape):
        raise ValueError(f"the recording is {rollout.meta.frame_shape}, the model makes {model.spec.frame_shape}")
    session = Session(model, np.ascontiguousarray(rollout.frames[0]), policy=config.get("policy", "full"),
                      budget_bytes=config.get("budget_bytes"), seed=rollout.meta.seed,
                      memory_factory=memory_factory or default_memory_factory)
    for action in config.get("prefix_actions", []):
        session.step(int(action))
    out = np.empty((max(0, len(rollout) - 1), *model.spec.frame_shape), np.uint8)
    for t in range(1, len(rollout)):
        out[t - 1] = session.step(int(rollout.actions[t])).frame
        if on_frame is not None:
            on_frame(t, out[t - 1])
    return out
