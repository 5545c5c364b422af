"""Frame metrics of the benches: pure functions of uint8 RGB frames `[N, H, W, 3]`.

Each metric is computed per frame (or per pair of consecutive frames); the bench averages them.

- `psnr`: the one PSNR of every bench, `10 log10(255^2 / MSE)` dB with the MSE over a frame's pixels and
  RGB channels, per frame, capped at `PSNR_CAP` = 100 dB. Two different uint8 frames of a few thousand
  pixels stay well below it (one value off by one in a 64x48 frame is 87.8 dB), so the cap marks exactly
  the identical frames: what `bench memory` needs to tell a policy that reproduces the full cache from one
  that nearly does. Averages of PSNR over frames include identical frames at 100 dB.
- `gray`: BT.601 luma `0.299 R + 0.587 G + 0.114 B`, float32 in [0, 255].
- `sharpness`: the mean absolute image gradient of the grayscale frame: the mean of `|g[y, x+1] - g[y, x]|`
  over all horizontally adjacent pixels and the mean of `|g[y+1, x] - g[y, x]|` over all vertically
  adjacent pixels, averaged (grey levels per pixel step). A blurred frame scores low, a flat one 0.
- `motion`: the mean absolute change from the previous frame, over all pixels and RGB channels
  (0..255). A frozen frame scores 0.
- `horizontal_shift`: how many pixels the picture moved right from the previous frame to this one, by
  phase correlation: both grayscale frames minus their mean, times a 2-D Hann window, are Fourier
  transformed; the inverse transform of the normalised cross-power spectrum `B conj(A) / |B conj(A)|` peaks
  at the displacement `(dy, dx)` with `frame(x) = previous(x - dx)`; `dx` is wrapped to `[-W/2, W/2)`.
  Two flat frames (no structure to match) give 0.
- `turn_agreement`: over the frames whose action is a pure turn (`turn_left` or `turn_right` alone), the
  fraction whose `horizontal_shift` has the sign the real game gives that turn (`TURN_SHIFT_SIGN`). A zero
  shift (a frozen, blurred or flat frame) counts as disagreement.
- `nearest_psnr`: the PSNR (`psnr`) of each frame to its nearest frame (least mean squared error) in a
  bank of frames. The nearest frame is found with chunked float32 matmuls (`|a|^2 + |b|^2 - 2 a.b` on
  pixels centred at 128), then its PSNR is computed exactly.
- `segments`: the free-play frame ranges scored separately, 1-based and inclusive: 1-32, 33-128, 129-512,
  513-1024, then one more per doubling (1025-2048, 2049-4096, ...), the last one cut at the run's length.
"""

from __future__ import annotations

import math

import numpy as np
from reverie.world.actions import DOOM_ACTIONS

TURN_LEFT, TURN_RIGHT = DOOM_ACTIONS.index("turn_left"), DOOM_ACTIONS.index("turn_right")
#: Sign of `horizontal_shift` the real game gives a pure turn. Turning left swings the view left, so the
#: picture moves right (+); turning right moves it left (-). Checked on real game frames by the tests.
TURN_SHIFT_SIGN = {TURN_LEFT: +1, TURN_RIGHT: -1}
SEGMENT_ENDS = (32, 128, 512, 1024)
PSNR_CAP = 100.0


def psnr(a: np.ndarray, b: np.ndarray):
    """PSNR in dB of uint8 RGB frames, capped at `PSNR_CAP`: a float for two frames `[H, W, 3]`, float64
    `[N]` (one per frame) for stacks `[N, H, W, 3]` (either side may be a single frame, broadcast)."""
    diff = np.asarray(a).astype(np.float64) - np.asarray(b).astype(np.float64)
    mse = (diff ** 2).reshape(-1, math.prod(diff.shape[-3:])).mean(1)
    vals = np.array([PSNR_CAP if m == 0 else min(PSNR_CAP, 10 * math.log10(255.0 ** 2 / m)) for m in mse])
    return float(vals[0]) if diff.ndim == 3 else vals


def gray(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB frames `[..., H, W, 3]` -> float32 `[..., H, W]` in [0, 255]."""
    return np.asarray(frames, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def sharpness(frames: np.ndarray, chunk: int = 512) -> np.ndarray:
    """`[N]`: mean absolute horizontal and vertical finite difference of the grayscale frames, averaged
    (computed `chunk` frames at a time)."""
    out = []
    for i in range(0, len(frames), chunk):
        g = gray(frames[i:i + chunk])
        dx, dy = np.abs(np.diff(g, axis=-1)), np.abs(np.diff(g, axis=-2))
        out.append((dx.mean(axis=(-2, -1)) + dy.mean(axis=(-2, -1))) / 2)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def motion(previous: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """`[N]`: mean absolute difference of `frames[i]` and `previous[i]` over pixels and channels."""
    return np.abs(frames.astype(np.float32) - previous.astype(np.float32)).mean(axis=(-3, -2, -1))


def horizontal_shift(previous: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """`[N]` int: pixels the picture moved right from `previous[i]` to `frames[i]` (phase correlation)."""
    a, b = gray(previous).astype(np.float64), gray(frames).astype(np.float64)
    h, w = a.shape[-2:]
    window = np.outer(np.hanning(h), np.hanning(w))
    fa = np.fft.fft2((a - a.mean(axis=(-2, -1), keepdims=True)) * window)
    fb = np.fft.fft2((b - b.mean(axis=(-2, -1), keepdims=True)) * window)
    cross = fb * np.conj(fa)
    mag = np.abs(cross)
    cross = np.where(mag > 1e-9, cross / np.maximum(mag, 1e-9), 0.0)
    corr = np.fft.ifft2(cross).real.reshape(len(a), -1)
    peak = np.argmax(corr, axis=1)
    flat = corr.max(axis=1) <= 1e-9  # nothing to correlate: no shift
    dx = (peak % w + w // 2) % w - w // 2
    return np.where(flat, 0, dx).astype(np.int64)


def turn_agreement(previous: np.ndarray, frames: np.ndarray, actions: np.ndarray) -> tuple[float, int]:
    """(fraction of pure-turn frames whose picture moved the way the real game's does, number of them);
    `frames[i]` is the frame `actions[i]` produced from `previous[i]`. NaN when there is no pure turn."""
    actions = np.asarray(actions)
    turns = np.flatnonzero(np.isin(actions, list(TURN_SHIFT_SIGN)))
    if len(turns) == 0:
        return float("nan"), 0
    expected = np.array([TURN_SHIFT_SIGN[int(a)] for a in actions[turns]])
    shift = horizontal_shift(previous[turns], frames[turns])
    return float(np.mean(np.sign(shift) == expected)), int(len(turns))


def nearest_psnr(frames: np.ndarray, bank: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """`[N]`: PSNR of each frame to its nearest bank frame (min MSE); float32 scratch is ~3 chunks of frames."""
    import torch

    q_all = torch.from_numpy(np.ascontiguousarray(frames).reshape(len(frames), -1))
    b_all = torch.from_numpy(np.ascontiguousarray(bank).reshape(len(bank), -1))
    nearest = torch.zeros(len(frames), dtype=torch.long)
    for qs in range(0, len(frames), chunk):
        q = q_all[qs:qs + chunk].float() - 128.0
        best = torch.full((len(q),), float("inf"))
        arg = torch.zeros(len(q), dtype=torch.long)
        for bs in range(0, len(bank), chunk):
            b = b_all[bs:bs + chunk].float() - 128.0
            dist = (q * q).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2.0 * (q @ b.T)
            value, index = dist.min(dim=1)
            better = value < best
            best = torch.where(better, value, best)
            arg = torch.where(better, index + bs, arg)
        nearest[qs:qs + chunk] = arg
    return np.array([psnr(f, bank[i]) for f, i in zip(frames, nearest.tolist())])


def segments(frames: int) -> list[tuple[int, int]]:
    """1-based inclusive free-play frame ranges: ends at 32, 128, 512, 1024, then doubling, cut at `frames`."""
    ends = list(SEGMENT_ENDS)
    while ends[-1] < frames:
        ends.append(ends[-1] * 2)
    starts = [1] + [e + 1 for e in ends[:-1]]
    return [(s, min(e, frames)) for s, e in zip(starts, ends) if s <= frames]
