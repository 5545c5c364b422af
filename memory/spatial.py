"""Spatial memory (Memory Forcing, for a KV runtime): a pose-indexed archive of past frames' keys/values
in host memory, and top-k retrieval of the frames that saw what the player is about to see.

Frames leaving the recent window are copied (all layers) into a ring of `capacity` frames in host memory
(pinned when the cache is on a GPU), together with the pose the player had at that frame. At each chunk
start, archived frames are ranked by view overlap with the current pose:

    score = max(0, 1 - |angle difference| / fov) * exp(-distance / distance_scale)

and the top `k` (excluding frames already visible) are copied into the `retrieved` region of every
layer. Poses are `(x, y, angle_degrees)` in map units (ViZDoom: `POSITION_X`, `POSITION_Y`, `ANGLE`).
Host memory is outside the KV budget (it is reported separately in `stats()["archive_bytes"]`); a server
still reserves it for the session (`memory.footprint.session_bytes`).
"""

from __future__ import annotations

import threading

import math

import numpy as np
import torch

from reverie.memory.prefault import AHEAD, PREFAULTER


Pose = tuple[float, float, float]


def view_overlap(a: Pose, b: Pose, fov: float, distance_scale: float) -> float:
    """How much two poses see the same thing: direction overlap times distance decay, in [0, 1]."""
    dang = abs((a[2] - b[2] + 180.0) % 360.0 - 180.0)
    dist = math.hypot(a[0] - b[0], a[1] - b[1])
    return max(0.0, 1.0 - dang / fov) * math.exp(-dist / distance_scale)


class FrameArchive:
    """Host ring of `capacity` frames: k, v `[capacity, layers, H, F, D]` plus per-slot frame id and pose."""

    def __init__(self, spec, capacity: int, device, fov: float = 90.0, distance_scale: float = 128.0) -> None:
        pin = torch.device(device).type == "cuda"
        shape = (capacity, spec.layers, spec.heads, spec.tokens_per_frame, spec.head_dim)
        # uninitialised: a slot is read only after it was written. Building a session must stay cheap: the
        # server builds it between other players' frames, and zeroing an archive of tens of MB there
        # (measured: a 760 ms gap in a player's frames under `reverie bench flood`, against 108 ms) costs
        # more than the first-touch page faults it saves in the frame loop (about 0.4 ms per frame over
        # the first `capacity` frames, `dual` at a quarter budget). Those faults are taken off the frame
        # path instead: `memory.prefault` touches the slots just ahead of the writer on a background
        # thread. Admission charges the session these bytes either way.
        self.k = torch.empty(shape, dtype=spec.kv_dtype, pin_memory=pin)
        self.v = torch.empty(shape, dtype=spec.kv_dtype, pin_memory=pin)
        self.lock = threading.Lock()   # the writer's slot assignment against the prefaulter's touching
        self._touch_asked = 0          # slots below this have been handed to the prefaulter ...
        self._touched = 0              # ... and below this it has been through
        self.capacity, self.fov, self.distance_scale = capacity, fov, distance_scale
        self._frames = np.full(capacity, -1, dtype=np.int64)  # frame id per slot
        self._poses = np.zeros((capacity, 3), dtype=np.float64)  # pose per slot
        self.slot_of: dict[int, int] = {}
        self.written = 0
        self.poses: dict[int, tuple[float, float, float]] = {}  # frame -> pose, for frames not yet archived

    def note_pose(self, frames: range, pose) -> None:
        """Remember the pose of the frames about to be generated."""
        if pose is not None:
            p = tuple(float(x) for x in pose)
            for f in frames:
                self.poses[f] = p

    def put(self, layer: int, frames: list[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """Archive `frames` (`k`, `v`: `[H, len(frames) * F, D]`) of one layer; frames without a pose are
        not archived (they cannot be retrieved)."""
        f = self.k.shape[3]
        for i, fr in enumerate(frames):
            slot = self._slot(fr)
            if slot is not None:
                self.k[slot, layer].copy_(k[:, i * f:(i + 1) * f], non_blocking=True)
                self.v[slot, layer].copy_(v[:, i * f:(i + 1) * f], non_blocking=True)

    def put_layers(self, frames: list[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """`put` for every layer at once: `k`, `v` `[layers, H, len(frames) * F, D]`."""
        f = self.k.shape[3]
        for i, fr in enumerate(frames):
            slot = self._slot(fr)
            if slot is not None:
                self.k[slot].copy_(k[:, :, i * f:(i + 1) * f], non_blocking=True)
                self.v[slot].copy_(v[:, :, i * f:(i + 1) * f], non_blocking=True)

    def _slot(self, fr: int) -> int | None:
        """The archive slot of frame `fr`, taking the next ring slot for a new frame with a known pose
        (None: no pose, not archived)."""
        if fr not in self.slot_of:
            pose = self.poses.pop(fr, None)
            if pose is None:
                return None
            with self.lock:
                slot = self.written % self.capacity
                old = int(self._frames[slot])
                if old >= 0:
                    self.slot_of.pop(old, None)
                self._frames[slot], self._poses[slot], self.slot_of[fr] = fr, pose, slot
                self.written += 1
            if self._touch_asked < self.capacity and self._touch_asked < self.written + AHEAD:
                self._touch_asked = min(self.capacity, self.written + 2 * AHEAD)
                PREFAULTER.request(self, self._touch_asked)
        return self.slot_of[fr]

    def __getstate__(self) -> dict:  # a copy (`Session.fork`) gets a lock of its own
        state = dict(self.__dict__)
        del state["lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def touch_ahead(self, upto: int) -> None:
        """Zero the slots below `upto` the writer has not reached (the prefaulter's thread calls this)."""
        for slot in range(self._touched, upto):
            with self.lock:
                if slot >= self.written and self._frames[slot] < 0:
                    self.k[slot].zero_()
                    self.v[slot].zero_()
        self._touched = max(self._touched, upto)

    def retrieve(self, pose, k: int, exclude: set[int]) -> list[int]:
        """The `k` archived frames with the highest view overlap with `pose` (positive overlap only),
        best first (ties: newer first), skipping frames in `exclude`."""
        n = min(self.written, self.capacity)
        if pose is None or k <= 0 or n == 0:
            return []
        d = self._poses[:n] - np.asarray(pose, dtype=np.float64)
        frames = self._frames[:n]
        dang = np.abs((180.0 - d[:, 2]) % 360.0 - 180.0)
        score = np.maximum(0.0, 1.0 - dang / self.fov) * np.exp(-np.hypot(d[:, 0], d[:, 1]) / self.distance_scale)
        out = []
        for i in np.lexsort((-frames, -score)):  # best first; usually stops after k (exclusions are rare)
            if score[i] <= 0.0 or len(out) == k:
                break
            frame = int(frames[i])
            if frame not in exclude:
                out.append(frame)
        return out

    def frames_kv(self, frames: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of archived `frames`, all layers: two `[len(frames), layers, H, F, D]` (host)."""
        idx = torch.tensor([self.slot_of[f] for f in frames], dtype=torch.int64)
        return self.k.index_select(0, idx), self.v.index_select(0, idx)

    def frame_kv(self, frame: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        slot = self.slot_of[frame]
        return self.k[slot, layer], self.v[slot, layer]

    def forget_poses_before(self, frame: int) -> None:
        for f in [f for f in self.poses if f < frame]:
            del self.poses[f]

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def clear(self) -> None:
        self._frames.fill(-1)
        self.slot_of.clear()
        self.poses.clear()
        self.written = 0
