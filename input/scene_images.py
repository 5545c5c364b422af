"""Frames a player can start a new scene from (`reverie play --scene-image FILE`): loaded once, when the
client starts, at the model's frame shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_scene_image(path: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 `shape` = `(H, W, 3)` from an image file (PNG, JPEG, BMP: resampled to `W x H`, nearest) or a
    `.npy` array (which must already be uint8 of that shape). ValueError for what cannot be one."""
    path = Path(path)
    h, w, _ = shape
    if path.suffix == ".npy":
        try:
            frame = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"scene image {path}: {exc}") from None
        if frame.dtype != np.uint8 or frame.shape != tuple(shape):
            raise ValueError(f"scene image {path} is {frame.dtype} {frame.shape}, the model needs uint8 {tuple(shape)}")
        return np.ascontiguousarray(frame)
    import pygame

    try:
        surface = pygame.image.load(str(path))
    except (pygame.error, FileNotFoundError) as exc:
        raise ValueError(f"scene image {path}: {exc}") from None
    image = pygame.surfarray.array3d(surface).transpose(1, 0, 2)  # [rows, columns, 3], any pixel format
    rows = (np.arange(h) + 0.5) * image.shape[0] / h
    cols = (np.arange(w) + 0.5) * image.shape[1] / w
    return np.ascontiguousarray(image[rows.astype(np.int64)][:, cols.astype(np.int64)], dtype=np.uint8)
