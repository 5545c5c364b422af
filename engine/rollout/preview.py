"""preview.mp4: an H.264 (yuv420p) preview of a rollout, upscaled with nearest neighbour so small frames
are watchable. Lossy; `frames.npy` stays the record of truth."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def preview_scale(frame_shape: tuple[int, ...], min_height: int = 192) -> int:
    """Integer upscale so the preview is at least `min_height` pixels tall."""
    return max(1, -(-min_height // int(frame_shape[0])))


def write_preview(path: str | Path, frames: np.ndarray, fps: float = 35.0, scale: int | None = None,
                  crf: int = 20) -> Path:
    """Encode uint8 [T, H, W, 3] frames to `path` (written to a temp name, then renamed)."""
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"preview needs uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    k = preview_scale(frames.shape[1:]) if scale is None else int(scale)
    h, w = frames.shape[1] * k, frames.shape[2] * k
    ph, pw = h + (h % 2), w + (w % 2)  # yuv420p needs even sides
    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        canvas = np.zeros((ph, pw, 3), np.uint8)
        for frame in frames:
            canvas[:h, :w] = frame.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path
