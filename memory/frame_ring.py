"""Frame-granular regions of a layer's cache (sink, recent, retrieved): `FrameRing`, one layer's frames
in preallocated slots, and `RingStack`, one region of every layer on stacked buffers.

All buffers are allocated once (the unbounded `full` reference without a horizon is the one exception: it
doubles its capacity when full). Writes use slicing / `index_copy_`; occupancy is a Python int derived
from the frame clock and the policy, never read back from a tensor, so `view` and `commit` make no host
syncs.
"""

from __future__ import annotations

import torch

from reverie.kernels.view import KVSegment
from reverie.memory.tokens import Tokens


class FrameRing:
    """The newest `capacity` frames of one layer, one frame per `tokens_per_frame` contiguous slots.

    Modes: `ring` overwrites the oldest frame (its rows are handed back to the caller first), `fill` keeps
    the first frames and refuses more (sinks), `grow` doubles its buffers when full (the unbounded
    reference), `bounded` raises when full (the reference under a budget). Slot order is frame order
    modulo the capacity; positions make the order irrelevant to attention.
    """

    def __init__(self, *, capacity: int, heads: int, head_dim: int, tokens_per_frame: int,
                 dtype: torch.dtype, device, mode: str = "ring", buffers: dict | None = None) -> None:
        """`buffers`: preallocated `k`, `v` `[H, capacity * F, D]` and `frame` `[capacity * F]` to use
        (a layer's slice of a `RingStack`)."""
        if mode not in ("ring", "fill", "grow", "bounded"):
            raise ValueError(f"unknown FrameRing mode {mode!r}")
        if buffers is not None and mode == "grow":
            raise ValueError("a FrameRing on shared buffers cannot grow")
        self.capacity, self.mode, self.f = capacity, mode, tokens_per_frame
        if buffers is not None:
            self.k, self.v, self.frame = buffers["k"], buffers["v"], buffers["frame"]
        else:
            self.k = torch.zeros(heads, capacity * tokens_per_frame, head_dim, dtype=dtype, device=device)
            self.v = torch.zeros_like(self.k)
            self.frame = torch.full((capacity * tokens_per_frame,), -1, dtype=torch.int64, device=device)
        self.frames: list[int] = []  # held frame ids, oldest first (host metadata)
        self.written = 0  # frames ever written since the last clear (slot = written % capacity)

    @property
    def full(self) -> bool:
        return len(self.frames) >= self.capacity

    @property
    def slots_used(self) -> int:
        return min(self.written, self.capacity) * self.f

    def row(self, age: int = 0) -> int:
        """The row holding the frame `age` frames older than the newest (0: the newest); its slots are
        `row * F .. (row + 1) * F`."""
        return (self.written - 1 - age) % self.capacity

    def push(self, k: torch.Tensor, v: torch.Tensor, frame: int, out: Tokens | None = None, at: int = 0) -> bool:
        """Store one frame (`k`, `v`: `[H, F, D]`). In `ring` mode, when full, the displaced oldest frame is
        first copied into `out` at token offset `at` (if given). Returns True if a frame was displaced."""
        if self.full:
            if self.mode == "fill":
                raise RuntimeError("sink is full")
            if self.mode == "bounded":
                raise RuntimeError("bounded ring is full")
            if self.mode == "grow":
                self._grow()
        displaced = self.full
        s = (self.written % self.capacity) * self.f
        e = s + self.f
        if displaced and out is not None:
            out.k[:, at:at + self.f].copy_(self.k[:, s:e])
            out.v[:, at:at + self.f].copy_(self.v[:, s:e])
            out.frame[at:at + self.f].fill_(self.frames[0])
        if displaced:
            self.frames.pop(0)
        self.k[:, s:e].copy_(k)
        self.v[:, s:e].copy_(v)
        self.frame[s:e].fill_(frame)
        self.frames.append(frame)
        self.written += 1
        return displaced

    def _grow(self) -> None:
        n = self.capacity * self.f
        for name in ("k", "v"):
            old = getattr(self, name)
            new = torch.zeros(old.shape[0], 2 * n, old.shape[2], dtype=old.dtype, device=old.device)
            new[:, :n].copy_(old)
            setattr(self, name, new)
        frame = torch.full((2 * n,), -1, dtype=torch.int64, device=self.frame.device)
        frame[:n].copy_(self.frame)
        self.frame, self.capacity = frame, 2 * self.capacity

    def keep_last(self, n_frames: int) -> None:
        """Drop all but the newest `n_frames` frames (flush), compacting them to the start."""
        keep = self.frames[-n_frames:] if n_frames else []
        rows = [self.row(len(keep) - 1 - i) for i in range(len(keep))]
        ks = [self.k[:, r * self.f:(r + 1) * self.f].clone() for r in rows]
        vs = [self.v[:, r * self.f:(r + 1) * self.f].clone() for r in rows]
        self.clear()
        for fr, k, v in zip(keep, ks, vs):
            self.push(k, v, fr)

    def clear(self) -> None:
        self.frames.clear()
        self.written = 0
        self.frame.fill_(-1)

    def segment(self, pos: torch.Tensor, bias: torch.Tensor | None = None) -> KVSegment:
        n = self.slots_used
        return KVSegment(k=self.k[:, :n], v=self.v[:, :n], pos=pos, bias=bias)

    def held_bytes(self, token_bytes: int) -> int:
        return len(self.frames) * self.f * token_bytes

    def allocated_bytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


class RingStack:
    """Every layer's `fill`-mode `FrameRing` of one region on stacked buffers (`k`, `v` `[L, H, R * F, D]`,
    `frame` `[L, R * F]`), so a new set of frames is loaded into all layers with one copy (retrieval)."""

    def __init__(self, *, layers: int, capacity: int, heads: int, head_dim: int, tokens_per_frame: int,
                 dtype: torch.dtype, device) -> None:
        n = capacity * tokens_per_frame
        self.f = tokens_per_frame
        self.k = torch.zeros(layers, heads, n, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.frame = torch.full((layers, n), -1, dtype=torch.int64, device=device)
        self.rings = [FrameRing(capacity=capacity, heads=heads, head_dim=head_dim, tokens_per_frame=tokens_per_frame,
                                dtype=dtype, device=device, mode="fill",
                                buffers={"k": self.k[i], "v": self.v[i], "frame": self.frame[i]})
                      for i in range(layers)]

    def load(self, frames: list[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """Replace every layer's frames by `frames` (in that order), `k`, `v` `[len(frames), L, H, F, D]`."""
        r = len(frames)
        if r > self.rings[0].capacity:
            raise RuntimeError(f"{r} frames do not fit a region of {self.rings[0].capacity}")
        self.frame.fill_(-1)
        if r:
            layers, heads, _, d = self.k.shape
            for dst, src in ((self.k, k), (self.v, v)):
                dst[:, :, : r * self.f].view(layers, heads, r, self.f, d).copy_(src.permute(1, 2, 0, 3, 4),
                                                                                 non_blocking=True)
            ids = torch.tensor(frames, dtype=torch.int64).repeat_interleave(self.f)
            self.frame[:, : r * self.f].copy_(ids.to(self.frame.device, non_blocking=True))
        for ring in self.rings:
            ring.frames = list(frames)
            ring.written = r
