"""Test helper: a `Server` with the tiny model running in a background thread on a loopback port.

Sessions run on `ListMemory` (policies "full" and "window", a 200 kB budget unless told otherwise); pass
`memory_factory=default_memory_factory, footprint=memory.session_bytes` for the real memory."""

from __future__ import annotations

import threading

import numpy as np
import torch
import zmq

from reverie.engine import protocol as P
from reverie.engine.server import Server, ServerConfig
from tinyworld import TinyWorld, list_memory_bytes, list_memory_factory


def seed_frame(shape) -> np.ndarray:
    h, w, _ = shape
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], -1).astype(np.uint8)


def raw_socket(endpoint):
    """A bare DEALER on `endpoint`, for messages `input.net.Connection` would never send."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def recv(sock, timeout_ms=5000):
    """The next message on `sock`: its decoded header and its other parts."""
    assert sock.poll(timeout_ms), "no reply from the server"
    parts = sock.recv_multipart()
    return P.decode(parts[0]), parts[1:]


class ServerThread:
    def __init__(self, model=None, seed_frame_fn=seed_frame, memory_factory=list_memory_factory,
                 footprint=list_memory_bytes, scene_frame_fn=None, **config):
        torch.set_num_threads(1)
        self.model = model or TinyWorld()
        config.setdefault("endpoint", "tcp://127.0.0.1:0")
        if memory_factory is list_memory_factory:
            config.setdefault("policy", "full")
            config.setdefault("policies", ("full", "window"))
            config.setdefault("budget_bytes", 200_000)
        self.server = Server(self.model, ServerConfig(**config), seed_frame=seed_frame_fn, scene_frame=scene_frame_fn,
                             memory_factory=memory_factory, footprint=footprint)
        self.endpoint = self.server.endpoint
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_ms": 10}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server did not stop"
