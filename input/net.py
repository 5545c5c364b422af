"""The client end of the wire: a ZeroMQ DEALER that speaks `engine.protocol` (no torch, no pygame).

`Connection` opens a session (hello -> welcome), sends one action per wanted frame while it holds a
credit, and drains incoming messages keeping only the newest frame. It measures latency as the time from
sending an action (the keys were polled just before) to `mark_shown` of the frame that answers it.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import zmq

from reverie.engine import protocol as P
from reverie.engine.curve import secure_client
from reverie.world.actions import ActionSpace


SERVER_HEADER_LIMIT = 1 << 20  # stats from the server may be larger than a client's messages


class ServerError(RuntimeError):
    """The server refused or failed a request; `code` is the protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(slots=True)
class ReceivedFrame:
    header: P.Frame
    pixels: np.ndarray   # uint8 [H, W, 3], a view of the received message (read-only)
    t_recv_ns: int


class Percentiles:
    """Rolling p50/p95 over the last `n` samples (milliseconds)."""

    def __init__(self, n: int = 600):
        self.samples: deque[float] = deque(maxlen=n)

    def add(self, ms: float) -> None:
        self.samples.append(ms)

    def p(self, q: float) -> float:
        return float(np.percentile(np.fromiter(self.samples, float), q)) if self.samples else 0.0


class Connection:
    """One session on a server.

    Args:
        endpoint: e.g. "tcp://127.0.0.1:5555".
        credits: frames allowed in flight (1 = lowest latency; 2 hides the network round trip).
        hello: extra `Hello` fields (policy, budget_bytes, seed, record, ...).
        seed_frame: optional uint8 `[H, W, 3]` to start the world from.
    """

    def __init__(self, endpoint: str, *, credits: int = 1, timeout_s: float = 30.0, client: str = "reverie-client",
                 seed_frame: np.ndarray | None = None, context: zmq.Context | None = None,
                 server_key: str | None = None, client_key: str | None = None, **hello):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, os.urandom(8))
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        if server_key is not None:  # a CURVE server (`reverie serve --keys`): its public key file
            secure_client(self.sock, server_key, client_key)
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self.credits = credits
        self.in_flight = 0
        self.seq = 0
        self.latest: ReceivedFrame | None = None
        self.stats: dict = {}
        self.errors: deque[ServerError] = deque(maxlen=32)
        self.closed_reason: str | None = None
        self.latency = Percentiles()
        self.frames_received = 0
        self.lost = 0
        self._shown: tuple[int, int] = (-1, 0)
        self._last_send = 0.0
        self._last_stats = 0.0
        self._last_frame = time.monotonic()
        self.last_recv = time.monotonic()   # any message from the server (the client's liveness check)
        self.welcome = self._hello(P.Hello(client=client, credits=credits, **hello), seed_frame, timeout_s)
        self.frame_shape = tuple(self.welcome.frame_shape)
        try:  # what the model declares it takes: buttons, axes (the keymap and the mouse derive from it)
            self.action_space = ActionSpace.from_description(self.welcome.controls)
        except ValueError as exc:
            self.close()
            raise ServerError("bad_field", f"the server's action space is unusable: {exc}") from None

    def _hello(self, msg: P.Hello, seed_frame, timeout_s: float) -> P.Welcome:
        parts = [P.encode(msg)]
        if seed_frame is not None:
            seed_frame = np.ascontiguousarray(seed_frame, dtype=np.uint8)
            parts = [P.encode(replace(msg, seed_frame=list(seed_frame.shape))), memoryview(seed_frame).cast("B")]
        self.sock.send_multipart(parts, copy=False)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.sock.poll(100, zmq.POLLIN):
                continue
            header, *_ = self.sock.recv_multipart()
            reply = P.decode(header, SERVER_HEADER_LIMIT)
            if isinstance(reply, P.Welcome):
                return reply
            if isinstance(reply, P.Error):
                self.close(send_bye=False)
                raise ServerError(reply.code, reply.message)
        self.close(send_bye=False)
        raise TimeoutError(f"no answer from a server at {self.endpoint} within {timeout_s:.0f} s")

    # --- sending ------------------------------------------------------------------------------------
    def can_send(self) -> bool:
        if self.in_flight and time.monotonic() - self._last_frame > 2.0:  # a frame was lost: take the credit back
            self.lost += self.in_flight
            self.in_flight = 0
        return self.in_flight < self.credits and self.closed_reason is None

    def send_action(self, action) -> int:
        """Send one frame's action (one credit): any form `ActionSpace.coerce` takes (an index, a name, a
        `{"buttons", "axes"}` map, a value); raises `UnknownActionError` if the model has no such action.
        Returns its seq."""
        wire = self.action_space.to_wire(self.action_space.coerce(action))
        if self.in_flight == 0:
            self._last_frame = time.monotonic()
        self.seq += 1
        shown_seq, t_shown = self._shown
        msg = P.Action(seq=self.seq, action=wire, t_client_ns=time.monotonic_ns(), shown_seq=shown_seq,
                       t_shown_ns=t_shown)
        self.sock.send(P.encode(msg))
        self.in_flight += 1
        self._last_send = time.monotonic()
        return self.seq

    def control(self, op: str, value=None) -> None:
        self.sock.send(P.encode(P.Control(op=op, value=value)))
        self._last_send = time.monotonic()
        if op == "reset":
            self.in_flight = 0

    def scene(self, frame: np.ndarray | None = None, *, handling: str | None = None, place: str | None = None,
              pose=None) -> None:
        """Start a new scene (`engine.scene_request`): from `frame` (uint8, the model's frame shape), or the
        server's `place` (None: its next one); `handling` flush | cut | recache (None: the policy's)."""
        value = {k: v for k, v in (("handling", handling), ("place", place),
                                   ("pose", None if pose is None else [float(x) for x in pose])) if v is not None}
        parts = [P.encode(P.Control(op="scene", value=value or None))]
        if frame is not None:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if frame.shape != self.frame_shape:
                raise ValueError(f"a scene frame must be {self.frame_shape}, got {frame.shape}")
            parts.append(memoryview(frame).cast("B"))
        self.sock.send_multipart(parts, copy=False)
        self._last_send = time.monotonic()

    def keepalive(self, every_s: float = 0.5) -> None:
        """Ask for stats every `every_s` seconds (feeds the HUD; keeps the session's TTL fresh when paused)."""
        if time.monotonic() - self._last_stats > every_s:
            self._last_stats = time.monotonic()
            self.control("stats")

    # --- receiving ----------------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 0) -> ReceivedFrame | None:
        """Drain everything waiting (waiting up to `timeout_ms` for the first message); returns the newest
        frame received in this call, or None."""
        newest = None
        if not self.sock.poll(timeout_ms, zmq.POLLIN):
            return None
        while True:
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return newest
            now = time.monotonic_ns()
            self.last_recv = time.monotonic()
            try:
                msg = P.decode(parts[0].buffer, SERVER_HEADER_LIMIT)
            except P.ProtocolError as exc:
                self.errors.append(ServerError(exc.code, f"bad message from the server: {exc}"))
                continue
            if isinstance(msg, P.Frame):
                frame = self._frame(msg, parts, now)
                if frame is not None:
                    newest = frame
            elif isinstance(msg, P.Stats):
                self.stats = msg.data
            elif isinstance(msg, P.Error):
                self.errors.append(ServerError(msg.code, msg.message))
                if msg.code == "no_session":
                    self.closed_reason = msg.message
            elif isinstance(msg, P.Bye):
                self.closed_reason = msg.reason or "closed by the server"

    def _frame(self, msg: P.Frame, parts, now: int) -> ReceivedFrame | None:
        self.in_flight = max(0, self.in_flight - 1)
        self._last_frame = time.monotonic()
        if len(parts) != 2:
            self.errors.append(ServerError("malformed", "a frame without pixels"))
            return None
        shape = P.frame_shape(msg.shape)
        buf = parts[1].buffer
        if len(buf) != shape[0] * shape[1] * 3:
            self.errors.append(ServerError("malformed", "frame pixels do not match the header's shape"))
            return None
        self.frames_received += 1
        self.latest = ReceivedFrame(msg, np.frombuffer(buf, np.uint8).reshape(shape), now)
        return self.latest

    def mark_shown(self, frame: ReceivedFrame, t_ns: int | None = None) -> float:
        """Record that `frame` reached the screen; returns its key-to-display latency in ms."""
        t_ns = time.monotonic_ns() if t_ns is None else t_ns
        self._shown = (frame.header.seq, t_ns)
        ms = (t_ns - frame.header.t_client_ns) / 1e6
        self.latency.add(ms)
        return ms

    def close(self, send_bye: bool = True) -> None:
        if self.sock.closed:
            return
        if send_bye and self.closed_reason is None:
            try:
                self.sock.send(P.encode(P.Control(op="bye")), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        self.sock.close(linger=100 if send_bye else 0)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
