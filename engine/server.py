"""The engine server: one process, one model, many sessions, over a ZeroMQ ROUTER socket.

Each client is a DEALER whose routing id names its session. The loop alternates between draining the
socket (a bounded number of messages per turn, so a flood cannot starve play) and giving one ready session
one chunk (round-robin). A session is ready when it holds an action (each action is one credit, so the
server never produces a frame nobody asked for, and a slow client gets its latest frame, never a backlog)
and is not paused. Bad messages get an `error` reply and are counted; nothing a client sends can stop the
loop. Sessions that stay silent for `ttl_s` are closed and their memory released.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from engine import protocol as P
from engine.recorder import Recorder
from engine.scheduler import Admission, AdmissionError, RoundRobin
from engine.session import MemoryFactory, Session, default_memory_factory

log = logging.getLogger("reverie.server")

MAX_MESSAGES_PER_TURN = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How the server runs.

    Attributes:
        endpoint: ZeroMQ endpoint to bind; loopback unless told otherwise.
        policy: memory policy for sessions that do not ask for one.
        budget_bytes: KV budget per session when the client does not ask (None = the policy's own).
        total_budget_bytes: all sessions' budgets together must fit (None = no limit).
        policies: the policies a client may cycle through live.
        ttl_s: a session silent this long is closed and its memory freed.
        record_dir: where recordings go (a folder per recording).
    """

    endpoint: str = "tcp://127.0.0.1:5555"
    policy: str = "full"
    budget_bytes: int | None = None
    total_budget_bytes: int | None = None
    policies: tuple[str, ...] = ("full",)
    max_sessions: int = 8
    max_credits: int = 2
    ttl_s: float = 10.0
    heartbeat_ms: int = 1000
    record_dir: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or self.max_credits < 1 or self.max_sessions < 1:
            raise ValueError("ttl_s, max_credits and max_sessions must be positive")
        if self.budget_bytes is not None and self.budget_bytes <= 0:
            raise ValueError("budget_bytes must be positive")


@dataclass(eq=False)
class _Client:
    sid: bytes
    session: Session
    credits: int
    pending: deque = field(default_factory=deque)
    last_seen: float = 0.0
    recordings: int = 0
    frames: int = 0
    t_first: float = 0.0


class Server:
    """Serve `model` on `config.endpoint`. `seed_frame(shape) -> uint8 [H, W, 3]` gives the default
    start frame when a client sends none."""

    def __init__(self, model, config: ServerConfig, *, seed_frame: Callable[[tuple], np.ndarray],
                 memory_factory: MemoryFactory = default_memory_factory, context=None):
        import zmq

        self.model = model
        self.spec = model.spec
        self.config = config
        self._seed_frame = seed_frame
        self._memory_factory = memory_factory
        self._zmq = zmq
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        frame_bytes = int(np.prod(self.spec.frame_shape))
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 64)
        self.sock.setsockopt(zmq.RCVHWM, 4096)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max(1 << 20, 2 * frame_bytes + P.MAX_HEADER_BYTES))
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, config.heartbeat_ms)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * config.heartbeat_ms)
        self.sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * config.heartbeat_ms)
        self.sock.bind(config.endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.admission = Admission(config.total_budget_bytes, config.max_sessions)
        self.rr: RoundRobin[bytes] = RoundRobin()
        self.clients: dict[bytes, _Client] = {}
        self.counters: Counter = Counter()
        self._closing_recorders: list[Recorder] = []
        self._stop = False

    # --- loop ----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stop = True

    def serve_forever(self, max_idle_poll_ms: int = 50) -> None:
        try:
            while not self._stop:
                self.run_once(max_idle_poll_ms)
        finally:
            self.close()

    def run_once(self, max_idle_poll_ms: int = 50) -> None:
        busy = any(self._ready(sid) for sid in self.clients)
        if self.sock.poll(0 if busy else max_idle_poll_ms, self._zmq.POLLIN):
            self._drain()
        sid = self.rr.next(self._ready)
        if sid is not None:
            self._turn(self.clients[sid])
        self._sweep()

    def _ready(self, sid: bytes) -> bool:
        c = self.clients.get(sid)
        return c is not None and bool(c.pending) and not c.session.paused

    def _drain(self) -> None:
        zmq = self._zmq
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                parts = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._handle(parts)
            except Exception as exc:  # last line of defence: a message never stops the server
                log.exception("unexpected error while handling a message")
                self.counters["internal"] += 1
                self._send(parts[0].bytes, P.Error(code="internal", message=f"{type(exc).__name__}: {exc}"))

    # --- messages ------------------------------------------------------------------------------------
    def _handle(self, parts) -> None:
        sid = parts[0].bytes
        self.counters["messages"] += 1
        if len(parts) < 2:
            return self._reject(sid, P.ProtocolError("malformed", "empty message"))
        try:
            msg = P.decode(parts[1].buffer)
        except P.ProtocolError as exc:
            return self._reject(sid, exc)
        client = self.clients.get(sid)
        if client is not None:
            client.last_seen = time.monotonic()
        extra = parts[2:]
        if isinstance(msg, P.Hello):
            return self._hello(sid, msg, extra)
        if extra:
            return self._reject(sid, P.ProtocolError("malformed", f"a {type(msg).__name__.lower()} has no payload parts"))
        if isinstance(msg, (P.Action, P.Control)):
            if client is None:
                return self._reject(sid, P.ProtocolError("no_session", "no session for this client: send hello first"))
            if isinstance(msg, P.Action):
                return self._action(client, msg)
            return self._control(client, msg)
        return self._reject(sid, P.ProtocolError("unexpected", f"a client does not send '{type(msg).__name__.lower()}'"))

    def _reject(self, sid: bytes, exc: P.ProtocolError, seq: int = -1) -> None:
        self.counters[f"error_{exc.code}"] += 1
        self.counters["errors"] += 1
        self._send(sid, P.Error(code=exc.code, message=str(exc), seq=seq))

    def _hello(self, sid: bytes, msg: P.Hello, extra) -> None:
        if sid in self.clients:
            self._close(sid, "replaced")
        if len(extra) > 1 or (msg.seed_frame and len(extra) != 1):
            return self._reject(sid, P.ProtocolError("malformed", "a hello carries at most one seed frame part"))
        if msg.seed_frame or extra:
            shape = P.frame_shape(msg.seed_frame) if msg.seed_frame else ()
            if tuple(shape) != tuple(self.spec.frame_shape):
                return self._reject(sid, P.ProtocolError("bad_field", f"seed frame must be {list(self.spec.frame_shape)}"))
            buf = extra[0].buffer
            if len(buf) != int(np.prod(shape)):
                return self._reject(sid, P.ProtocolError("bad_field", f"seed frame part has {len(buf)} bytes, expected {int(np.prod(shape))}"))
            seed_frame = np.frombuffer(buf, np.uint8).reshape(shape).copy()
        else:
            try:
                seed_frame = self._seed_frame(tuple(self.spec.frame_shape))
            except Exception as exc:  # e.g. no real game installed to take a first frame from
                return self._reject(sid, P.ProtocolError("refused", f"this server has no seed frame ({exc}); "
                                                         "send one in the hello"))
        policy = msg.policy or self.config.policy
        budget = msg.budget_bytes or self.config.budget_bytes
        if msg.credits < 1:
            return self._reject(sid, P.ProtocolError("bad_field", "credits must be >= 1"))
        ok, why = self.admission.can_admit(budget or 0)
        if not ok:
            return self._reject(sid, P.ProtocolError("refused", why))
        try:
            session = Session(self.model, seed_frame, policy=policy, budget_bytes=budget,
                              seed=msg.seed or self.config.seed, session_id=sid.hex(),
                              memory_factory=self._memory_factory)
        except Exception as exc:  # e.g. memory.BudgetError, unknown policy: the client's request, not ours
            return self._reject(sid, P.ProtocolError("refused", f"cannot start a session: {exc}"))
        self.admission.admit(sid, budget or 0)
        client = _Client(sid, session, min(msg.credits, self.config.max_credits), last_seen=time.monotonic())
        client.pending = deque(maxlen=client.credits)
        self.clients[sid] = client
        self.rr.add(sid)
        self.counters["sessions_opened"] += 1
        try:
            if msg.record:
                self._record(client, True)
        except P.ProtocolError as exc:
            return self._close(sid, "refused", exc)
        self._send(sid, P.Welcome(session=sid.hex(), model=self.spec.name, frame_shape=list(self.spec.frame_shape),
                                  actions=list(self.spec.action_space.names), policy=policy, budget_bytes=budget or 0,
                                  policies=list(self.config.policies), chunk_frames=self.spec.chunk_frames,
                                  tics_per_step=self.spec.tics_per_step, step_hz=self.spec.real_time_fps))

    def _action(self, client: _Client, msg: P.Action) -> None:
        if not 0 <= msg.action < len(self.spec.action_space):
            return self._reject(client.sid, P.ProtocolError("bad_field", f"action {msg.action} is not in 0..{len(self.spec.action_space) - 1}"), msg.seq)
        if client.session.recorder is not None and msg.shown_seq >= 0:
            client.session.recorder.shown(msg.shown_seq, msg.t_shown_ns)
        if len(client.pending) == client.pending.maxlen:
            self.counters["coalesced"] += 1  # the client sent more than its credits: keep the newest
        client.pending.append(msg)

    def _control(self, client: _Client, msg: P.Control) -> None:
        op, value, s = msg.op, msg.value, client.session
        try:
            if op == "pause":
                s.paused = True
            elif op == "resume":
                s.paused = False
            elif op == "reset":
                seed = _int_or_none(value, "reset")
                recording = s.recorder is not None
                if recording:  # a recording covers one course of the world: finish it, start the next
                    self._record(client, False)
                s.reset(seed=seed)
                client.pending.clear()
                if recording:
                    self._record(client, True)
            elif op == "seed":
                s.set_seed(_int(value, "seed"))
            elif op == "policy":
                if not isinstance(value, str) or not value:
                    raise P.ProtocolError("bad_field", "control 'policy' needs a policy name")
                s.rebuild_memory(policy=value)
            elif op == "budget":
                nbytes = _int(value, "budget")
                ok, why = self.admission.can_admit(nbytes, client.sid)
                if not ok:
                    raise P.ProtocolError("refused", why)
                s.rebuild_memory(budget_bytes=nbytes)
                self.admission.resize(client.sid, nbytes)
            elif op == "flush":
                s.flush()
            elif op == "record":
                self._record(client, bool(value))
            elif op == "bye":
                self._close(client.sid, "bye")
                return
            elif op != "stats":
                raise P.ProtocolError("bad_field", f"unknown control op {op!r}; ops are {list(P.CONTROL_OPS)}")
        except P.ProtocolError as exc:
            return self._reject(client.sid, exc)
        except (AdmissionError, ValueError, RuntimeError, KeyError) as exc:
            return self._reject(client.sid, P.ProtocolError("refused", f"{op}: {exc}"))
        self._send(client.sid, P.Stats(data=self._stats(client)))

    # --- play ----------------------------------------------------------------------------------------
    def _turn(self, client: _Client) -> None:
        msg: P.Action = client.pending.popleft()
        try:
            r = client.session.step(msg.action, seq=msg.seq, t_client_ns=msg.t_client_ns)
        except Exception as exc:
            log.exception("session %s failed", client.sid.hex())
            self.counters["engine_errors"] += 1
            self._send(client.sid, P.Error(code="engine", message=f"the session failed and was closed: {exc}", seq=msg.seq))
            self._close(client.sid, "engine error")
            return
        if client.frames == 0:
            client.t_first = time.monotonic()
        client.frames += 1
        header = P.Frame(seq=msg.seq, index=r.index, action=r.action, shape=list(r.frame.shape),
                         t_client_ns=msg.t_client_ns, t_start_ns=r.t_start_ns, t_end_ns=r.t_end_ns,
                         pose=list(r.pose) if r.pose is not None else [], kv_bytes=int(client.session.memory.kv_bytes()),
                         recording=client.session.recorder is not None)
        self._send(client.sid, header, r.frame)

    def _record(self, client: _Client, on: bool) -> None:
        s = client.session
        if on and s.recorder is None:
            if self.config.record_dir is None:
                raise P.ProtocolError("refused", "this server was started without --record-dir")
            from pathlib import Path

            client.recordings += 1
            out = Path(self.config.record_dir) / f"{client.sid.hex()}-{client.recordings:03d}"
            try:
                s.start_recording(out)
            except (OSError, ValueError) as exc:
                raise P.ProtocolError("refused", f"cannot record to {out}: {exc}") from None
        elif not on and s.recorder is not None:
            self._closing_recorders.append(s.stop_recording(wait=False))

    # --- housekeeping --------------------------------------------------------------------------------
    def _send(self, sid: bytes, msg, payload: np.ndarray | None = None) -> None:
        zmq = self._zmq
        parts = [sid, P.encode(msg)]
        if payload is not None:
            parts.append(memoryview(payload).cast("B"))
        try:
            self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.counters["dropped"] += 1
        except zmq.ZMQError:  # EHOSTUNREACH: the peer is gone; its TTL will free the session
            self.counters["unreachable"] += 1

    def _sweep(self) -> None:
        self._closing_recorders = [r for r in self._closing_recorders if r.running]
        now = time.monotonic()
        for sid in [s for s, c in self.clients.items() if now - c.last_seen > self.config.ttl_s]:
            self.counters["sessions_expired"] += 1
            self._close(sid, "ttl")

    def _close(self, sid: bytes, reason: str, error: P.ProtocolError | None = None) -> None:
        client = self.clients.pop(sid, None)
        if client is None:
            return
        self.rr.remove(sid)
        self.admission.release(sid)
        if client.session.recorder is not None:
            self._closing_recorders.append(client.session.stop_recording(wait=False))
        self.counters["sessions_closed"] += 1
        log.info("session %s closed (%s)", sid.hex(), reason)
        if error is not None:
            self._reject(sid, error)
        elif reason not in ("ttl", "replaced"):
            self._send(sid, P.Bye(reason=reason))

    def _stats(self, client: _Client) -> dict:
        data = json.loads(json.dumps(client.session.stats(), default=str))  # plain JSON types on the wire
        elapsed = time.monotonic() - client.t_first if client.frames > 1 else 0.0
        data.update(fps=(client.frames - 1) / elapsed if elapsed > 0 else 0.0, frames=client.frames,
                    recording=client.session.recorder is not None,
                    recording_dir=str(client.session.recorder.path) if client.session.recorder is not None else "",
                    server={"sessions": len(self.clients), **{k: int(v) for k, v in self.counters.items()}})
        return data

    def close(self) -> None:
        """Close every session (recordings are finished), then the socket."""
        for sid in list(self.clients):
            self._close(sid, "server shutdown")
        for rec in self._closing_recorders:
            rec.close(wait=True)
        self.sock.close(linger=0)
        if self._own_ctx:
            self.ctx.term()


def _int(value, op: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise P.ProtocolError("bad_field", f"control '{op}' needs an integer value")
    return value


def _int_or_none(value, op: str) -> int | None:
    return None if value is None else _int(value, op)
