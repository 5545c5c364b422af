"""Test helper: a `Server` with the tiny model running in a background thread on a loopback port."""

from __future__ import annotations

import threading

import numpy as np
import torch

from engine.server import Server, ServerConfig
from tinyworld import TinyWorld, list_memory_factory


def seed_frame(shape) -> np.ndarray:
    h, w, _ = shape
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], -1).astype(np.uint8)


class ServerThread:
    def __init__(self, model=None, seed_frame_fn=seed_frame, **config):
        torch.set_num_threads(1)
        self.model = model or TinyWorld()
        config.setdefault("endpoint", "tcp://127.0.0.1:0")
        config.setdefault("policies", ("full", "window"))
        self.server = Server(self.model, ServerConfig(**config), seed_frame=seed_frame_fn,
                             memory_factory=list_memory_factory)
        self.endpoint = self.server.endpoint
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"max_idle_poll_ms": 10}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server did not stop"
