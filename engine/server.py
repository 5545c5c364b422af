"""The engine server: one process, one model, many sessions, over a ZeroMQ ROUTER socket.

Each client is a DEALER whose routing id names its session. The loop alternates between draining the
socket (a bounded number of messages for a bounded time per turn, so a flood cannot starve play) and
giving one ready session one chunk (round-robin). A session is ready when it holds an action (each action
is one credit, so the server never produces a frame nobody asked for, and a slow client gets its latest
frame, never a backlog) and is not paused. Bad messages get an `error` reply and are counted; nothing a
client sends can stop the loop.

Admission is by real bytes: a hello is checked in full first (`engine.hello`), priced by everything the
session will hold (`memory.session_bytes`: KV cache, spatial archive, buffers), admitted against the total
budget (default: a fraction of the free memory, `engine.capacity`), rate-limited per peer and server-wide
(`engine.ratelimit`), and only then built. Sessions that stay silent for `ttl_s` are closed and their memory
released; a session that has not asked for a frame within `pending_ttl_s` of its welcome (or whose peer is
gone before it did), and a session whose client keeps sending bad messages (`max_strikes`), are closed too,
so sessions opened by a flood cannot hold the slots.
"""

from __future__ import annotations

import dataclasses

import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from reverie.engine import protocol as P
from reverie.engine.capacity import DEFAULT_TOTAL_FRACTION, total_budget
from reverie.engine.curve import CurveError, CurveServer, is_loopback
from reverie.engine.hello import SessionRequest, check_hello
from reverie.engine.places import PlaceNotReady
from reverie.engine.poll_loop import PollLoop
from reverie.engine.ratelimit import Limiter, Rate
from reverie.engine.recorder import Recorder
from reverie.engine.scene_request import check_scene
from reverie.engine.scheduler import Admission, AdmissionError, RoundRobin
from reverie.engine.session import MemoryFactory, Session, default_memory_factory
from reverie.memory.footprint import RECACHE_CHUNKS, Footprint, session_bytes

log = logging.getLogger("reverie.server")

MAX_MESSAGES_PER_TURN = 256
STRIKES = frozenset({"malformed", "oversize", "version", "unknown_kind", "bad_field", "unexpected"})  # misbehaviour

#: `(spec, policy, budget_bytes, *, recache_chunks, latent_dtype, device) -> memory.Footprint`: what a session
#: built by the server's memory factory holds, raising as the factory would (`memory.session_bytes` for
#: `memory.MemoryManager`).
FootprintFn = Callable[..., Footprint]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """How the server runs.

    Attributes:
        endpoint: ZeroMQ endpoint to bind; loopback unless told otherwise.
        policy: memory policy for sessions that do not ask for one.
        budget_bytes: KV budget per session when the client does not ask (None = the policy's own).
        total_budget_bytes: every byte all sessions hold together must fit (`memory.session_bytes` prices a
            session); None = `total_budget_frac` of the memory free at start (`engine.capacity`).
        policies: the policies a client may cycle through live.
        ttl_s: a session silent this long is closed and its memory freed.
        pending_ttl_s: a session that has sent no action this long after its welcome is closed.
        peer_rate, server_rate: how often one peer (routing id), and all peers together, may have a
            session built.
        max_strikes: a session whose client sends this many bad messages (malformed, wrong fields, ...) is
            closed.
        drain_s: the most time one turn spends reading messages (one session build may overrun it).
        recache_chunks: clean chunks each session keeps to re-commit after a live policy/budget change.
        record_dir: where recordings go (a folder per recording).
        curve_secret: the server's CURVE secret key file (`reverie keys`); required to bind anything but
            loopback (`engine.curve`). Clients then need the matching public key.
        allow_clients: with `curve_secret`, a folder of the client public keys admitted (None: any client
            that has the server's public key).
    """

    endpoint: str = "tcp://127.0.0.1:5555"
    policy: str = "dual"
    budget_bytes: int | None = None
    total_budget_bytes: int | None = None
    total_budget_frac: float = DEFAULT_TOTAL_FRACTION
    policies: tuple[str, ...] = ("dual", "window", "deep-sink", "quant")
    max_sessions: int = 8
    max_credits: int = 2
    ttl_s: float = 10.0
    pending_ttl_s: float = 2.0
    peer_rate: Rate = Rate(burst=2, per_s=0.2)
    server_rate: Rate = Rate(burst=8, per_s=4.0)
    max_strikes: int = 16
    drain_s: float = 0.005
    recache_chunks: int = RECACHE_CHUNKS
    heartbeat_ms: int = 1000
    record_dir: str | None = None
    seed: int = 0
    curve_secret: str | None = None
    allow_clients: str | None = None

    def __post_init__(self) -> None:
        if self.curve_secret is None and not is_loopback(self.endpoint):
            raise CurveError(
                f"binding {self.endpoint} lets other machines connect, so it needs CURVE keys: make a pair with "
                "`reverie keys --out keys/`, serve with `--keys keys/server.key_secret` and give clients "
                "keys/server.key (`reverie client --server-key keys/server.key`)")
        if self.allow_clients is not None and self.curve_secret is None:
            raise ValueError("allow_clients needs curve_secret (the server's CURVE key)")
        if self.ttl_s <= 0 or self.pending_ttl_s <= 0 or self.max_credits < 1 or self.max_sessions < 1:
            raise ValueError("ttl_s, pending_ttl_s, max_credits and max_sessions must be positive")
        if self.budget_bytes is not None and self.budget_bytes <= 0:
            raise ValueError("budget_bytes must be positive")
        if self.total_budget_bytes is not None and self.total_budget_bytes <= 0:
            raise ValueError("total_budget_bytes must be positive")
        if not 0.0 < self.total_budget_frac <= 1.0:
            raise ValueError("total_budget_frac must be in (0, 1]")
        if self.drain_s <= 0 or self.recache_chunks < 1 or self.max_strikes < 1:
            raise ValueError("drain_s, recache_chunks and max_strikes must be positive")


@dataclass(eq=False)
class _Client:
    sid: bytes
    session: Session
    credits: int
    footprint: Footprint
    pending: deque = field(default_factory=deque)
    last_seen: float = 0.0
    t_open: float = 0.0
    acted: bool = False  # has sent an action (a session that never does is closed after pending_ttl_s)
    strikes: int = 0     # bad messages sent (the session is closed at max_strikes)
    recordings: int = 0
    frames: int = 0
    t_first: float = 0.0


class Server(PollLoop):
    """Serve `model` on `config.endpoint`. `seed_frame(shape) -> uint8 [H, W, 3]` gives the default
    start frame when a client sends none; `scene_frame(place) -> uint8 [H, W, 3]` the frame of a place
    (None: the next one) when a client asks for a new scene without sending its frame (no source: such a
    request is refused); `footprint` prices the sessions `memory_factory` builds."""

    def __init__(self, model, config: ServerConfig, *, seed_frame: Callable[[tuple], np.ndarray],
                 scene_frame: Callable[[str | None], np.ndarray] | None = None,
                 memory_factory: MemoryFactory = default_memory_factory, footprint: FootprintFn = session_bytes,
                 context=None):
        import zmq

        self.model = model
        self.spec = model.spec
        if self.spec.layers == 0 and (config.policy, config.policies) != ("none", ("none",)):
            log.info("model %s has no attention cache: memory policies do not apply, sessions use policy 'none'",
                     self.spec.name)
            config = dataclasses.replace(config, policy="none", policies=("none",))
        self.config = config
        self._seed_frame = seed_frame
        self._scene_frame = scene_frame
        self._memory_factory = memory_factory
        self._footprint = footprint
        with torch.inference_mode():  # what the session's kept latents are made of
            probe = torch.zeros((self.spec.frames_per_latent, *self.spec.frame_shape), dtype=torch.uint8, device=model.device)
            self._latent_dtype = model.encode(probe).dtype
        self._zmq = zmq
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        try:  # before any socket exists: a bad key file leaves nothing behind
            self._curve = (CurveServer(self.ctx, config.curve_secret, config.allow_clients)
                           if config.curve_secret is not None else None)
        except CurveError:
            if self._own_ctx:
                self.ctx.term()
            raise
        self.sock = self.ctx.socket(zmq.ROUTER)
        frame_bytes = int(np.prod(self.spec.frame_shape))
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 64)
        self.sock.setsockopt(zmq.RCVHWM, 1024)  # per connection: queued input stays bounded under a flood
        # a larger part than a seed frame (or 64 KiB) disconnects its sender before it is buffered
        self.sock.setsockopt(zmq.MAXMSGSIZE, max(1 << 16, frame_bytes + P.MAX_HEADER_BYTES))
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, config.heartbeat_ms)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * config.heartbeat_ms)
        self.sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * config.heartbeat_ms)
        if self._curve is not None:
            self._curve.apply(self.sock)
        self.sock.bind(config.endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.total = total_budget(config.total_budget_bytes, model.device, config.total_budget_frac)
        self.admission = Admission(self.total.bytes, config.max_sessions)
        self.limiter = Limiter(config.peer_rate, config.server_rate)
        self.rr: RoundRobin[bytes] = RoundRobin()
        self.clients: dict[bytes, _Client] = {}
        self.counters: Counter = Counter()
        self._closing_recorders: list[Recorder] = []

    # --- loop ----------------------------------------------------------------------------------------
    def run_once(self, poll_ms: int = PollLoop.POLL_MS) -> None:
        """Drain what arrived (waiting up to `poll_ms` only when no session has a frame to make), then make
        one chunk for the next ready session, round-robin."""
        busy = any(self._ready(sid) for sid in self.clients)
        if self.sock.poll(0 if busy else poll_ms, self._zmq.POLLIN):
            self._drain()
        sid = self.rr.next(self._ready)
        if sid is not None:
            self._turn(self.clients[sid])
        self._sweep()

    def _ready(self, sid: bytes) -> bool:
        c = self.clients.get(sid)
        return c is not None and bool(c.pending) and not c.session.paused

    def _drain(self) -> None:
        """Handle queued messages: at most `MAX_MESSAGES_PER_TURN`, and none once `drain_s` has passed (so
        a turn builds at most one session, the expensive message, and a frame never waits long)."""
        zmq = self._zmq
        deadline = time.monotonic() + self.config.drain_s
        for _ in range(MAX_MESSAGES_PER_TURN):
            if time.monotonic() > deadline:
                return  # the rest of the queue waits for the next turn
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
        if extra and not (isinstance(msg, P.Control) and msg.op == "scene"):
            return self._reject(sid, P.ProtocolError("malformed", f"a {type(msg).__name__.lower()} has no payload parts"))
        if isinstance(msg, (P.Action, P.Control)):
            if client is None:
                return self._reject(sid, P.ProtocolError("no_session", "no session for this client: send hello first"))
            if isinstance(msg, P.Action):
                return self._action(client, msg)
            return self._control(client, msg, extra)
        return self._reject(sid, P.ProtocolError("unexpected", f"a client does not send '{type(msg).__name__.lower()}'"))

    def _reject(self, sid: bytes, exc: P.ProtocolError, seq: int = -1) -> None:
        self.counters[f"error_{exc.code}"] += 1
        self.counters["errors"] += 1
        self._send(sid, P.Error(code=exc.code, message=str(exc), seq=seq))
        client = self.clients.get(sid)
        if client is not None and exc.code in STRIKES:
            client.strikes += 1
            if client.strikes >= self.config.max_strikes:  # a client that plays does not send garbage
                self.counters["sessions_struck"] += 1
                self._close(sid, f"{client.strikes} bad messages: the session was closed")

    def _hello(self, sid: bytes, msg: P.Hello, extra) -> None:
        """Check everything first, then admission (bytes, slots), then the rate limits; build last."""
        try:
            req = check_hello(msg, extra, spec=self.spec, default_policy=self.config.policy,
                              default_budget=self.config.budget_bytes, footprint=self.price,
                              default_seed_frame=self._seed_frame)
        except P.ProtocolError as exc:
            return self._reject(sid, exc)
        ok, why = self.admission.can_admit(req.footprint.total, sid)
        if not ok:
            return self._reject(sid, P.ProtocolError("refused", why))
        ok, why = self.limiter.acquire(sid, time.monotonic())
        if not ok:
            return self._reject(sid, P.ProtocolError("rate_limited", why))
        if sid in self.clients:
            self._close(sid, "replaced")
        self._open(sid, req)

    def _open(self, sid: bytes, req: SessionRequest) -> None:
        try:
            session = Session(self.model, req.seed_frame, policy=req.policy, budget_bytes=req.budget_bytes,
                              seed=req.seed or self.config.seed, session_id=sid.hex(),
                              memory_factory=self._memory_factory, recache_chunks=self.config.recache_chunks)
            if req.history is not None:  # a session resumed from elsewhere: its last frames, re-committed
                n = len(req.history) - len(req.history) % self.spec.frames_per_chunk
                session.observe(req.history[len(req.history) - n:], list(req.history_actions)[len(req.history) - n:])
        except Exception as exc:  # e.g. memory.BudgetError, unknown policy: the client's request, not ours
            return self._reject(sid, P.ProtocolError("refused", f"cannot start a session: {exc}"))
        self.admission.admit(sid, req.footprint.total)
        now = time.monotonic()
        client = _Client(sid, session, min(req.credits, self.config.max_credits), req.footprint, last_seen=now,
                         t_open=now)
        client.pending = deque(maxlen=client.credits)
        self.clients[sid] = client
        self.rr.add(sid)
        self.counters["sessions_opened"] += 1
        try:
            if req.record:
                self._record(client, True)
        except P.ProtocolError as exc:
            return self._close(sid, "refused", exc)
        fp = req.footprint
        self._send(sid, P.Welcome(session=sid.hex(), model=self.spec.name, frame_shape=list(self.spec.frame_shape),
                                  actions=list(self.spec.action_space.names),
                                  controls=self.spec.action_space.describe(), policy=fp.policy,
                                  budget_bytes=fp.budget_bytes, policies=list(self.config.policies),
                                  chunk_frames=self.spec.chunk_frames,
                                  frames_per_latent=self.spec.frames_per_latent, tics_per_step=self.spec.tics_per_step,
                                  step_hz=self.spec.real_time_fps, session_bytes=fp.total,
                                  total_budget_bytes=self.total.bytes))

    def price(self, policy: str, budget_bytes: int | None) -> Footprint:
        """Every byte a session of `policy` and `budget_bytes` will hold (raises as the memory would)."""
        return self._footprint(self.spec, policy, budget_bytes, recache_chunks=self.config.recache_chunks,
                               latent_dtype=self._latent_dtype, device=self.model.device)

    def _action(self, client: _Client, msg: P.Action) -> None:
        try:  # checked here, so a bad action is the client's error, never the engine's
            msg = dataclasses.replace(msg, action=self.spec.action_space.coerce(msg.action))
        except ValueError as exc:
            return self._reject(client.sid, P.ProtocolError("bad_field", f"action: {exc}"), msg.seq)
        if client.session.recorder is not None and msg.shown_seq >= 0:
            client.session.recorder.shown(msg.shown_seq, msg.t_shown_ns)
        client.acted = True
        if len(client.pending) == client.pending.maxlen:
            self.counters["coalesced"] += 1  # the client sent more than its credits: keep the newest
        client.pending.append(msg)

    def _control(self, client: _Client, msg: P.Control, extra=()) -> None:
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
                self._rebuild(client, value, s.budget_bytes)
            elif op == "budget":
                self._rebuild(client, s.policy, _int(value, "budget"))
            elif op == "flush":
                s.flush()
            elif op == "scene":
                req = check_scene(value, extra, tuple(self.spec.frame_shape))
                frame = req.frame if req.frame is not None else self._place(req.place)
                s.scene(frame, req.handling, pose=req.pose)  # actions still queued play on in the new scene
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

    def _place(self, place: str | None) -> np.ndarray:
        """The frame of `place` (None: the next place) from the server's scene source."""
        if self._scene_frame is None:
            raise P.ProtocolError("refused", "this server has no places to show: send the new scene's frame")
        try:
            frame = self._scene_frame(place)
        except (KeyError, ValueError) as exc:  # an unknown place: the client's request
            raise P.ProtocolError("bad_field", f"scene place: {exc}") from None
        except PlaceNotReady as exc:  # its frames are being made off the loop
            raise P.ProtocolError("refused", str(exc)) from None
        except Exception as exc:  # the source failed (e.g. no real game installed)
            raise P.ProtocolError("refused", f"cannot show a new place here ({exc}); send the scene's frame") from None
        return frame

    def _rebuild(self, client: _Client, policy: str, budget_bytes: int | None) -> None:
        """A live policy/budget change: priced and admitted like a new session, then built."""
        price = self.price(policy, budget_bytes)
        ok, why = self.admission.can_admit(price.total, client.sid)
        if not ok:
            raise P.ProtocolError("refused", why)
        client.session.rebuild_memory(policy=policy, budget_bytes=budget_bytes)
        self.admission.resize(client.sid, price.total)
        client.footprint = price

    # --- play ----------------------------------------------------------------------------------------
    def _turn(self, client: _Client) -> None:
        msg: P.Action = client.pending.popleft()
        try:
            r = client.session.step(msg.action, seq=msg.seq, t_client_ns=msg.t_client_ns)
        except Exception as exc:
            log.exception("session %s failed", client.sid.hex())
            self.counters["engine_errors"] += 1
            self._send(client.sid, P.Error(code="engine", message=f"the session failed and was closed: {exc}",
                                           seq=msg.seq))
            self._close(client.sid, "engine error")
            return
        if client.frames == 0:
            client.t_first = time.monotonic()
        client.frames += 1
        header = P.Frame(seq=msg.seq, index=r.index, action=self.spec.action_space.to_wire(r.action), shape=list(r.frame.shape),
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
        except zmq.ZMQError:  # EHOSTUNREACH: the peer is gone (or reconnecting: its TTL frees the session)
            self.counters["unreachable"] += 1
            client = self.clients.get(sid)
            if client is not None and not client.acted:  # it never played: free its slot now
                self.counters["sessions_gone"] += 1
                self._close(sid, "gone")

    def _sweep(self) -> None:
        self._closing_recorders = [r for r in self._closing_recorders if r.running]
        now = time.monotonic()
        ttl, pending_ttl = self.config.ttl_s, self.config.pending_ttl_s
        for sid in [s for s, c in self.clients.items() if now - c.last_seen > ttl]:
            self.counters["sessions_expired"] += 1
            self._close(sid, "ttl")
        for sid in [s for s, c in self.clients.items() if not c.acted and now - c.t_open > pending_ttl]:
            self.counters["sessions_unused"] += 1
            self._close(sid, f"no action within {pending_ttl:g} s of the welcome; the session was closed "
                             "to free its slot (send hello again)")

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
        elif reason not in ("ttl", "replaced", "gone"):
            self._send(sid, P.Bye(reason=reason))

    def _stats(self, client: _Client) -> dict:
        data = json.loads(json.dumps(client.session.stats(), default=str))  # plain JSON types on the wire
        elapsed = time.monotonic() - client.t_first if client.frames > 1 else 0.0
        data.update(fps=(client.frames - 1) / elapsed if elapsed > 0 else 0.0, frames=client.frames,
                    recording=client.session.recorder is not None,
                    recording_dir=str(client.session.recorder.path) if client.session.recorder is not None else "",
                    footprint=client.footprint.as_dict(),
                    server={"sessions": len(self.clients), "total_budget_bytes": self.total.bytes,
                            "total_budget_source": self.total.source,
                            "reserved_bytes": self.admission.reserved_bytes,
                            **{k: int(v) for k, v in self.counters.items()}})
        return data

    def close(self) -> None:
        """Close every session (recordings are finished), then the socket."""
        for sid in list(self.clients):
            self._close(sid, "server shutdown")
        for rec in self._closing_recorders:
            rec.close(wait=True)
        self.sock.close(linger=0)
        if self._curve is not None:
            self._curve.stop()
        if self._own_ctx:
            self.ctx.term()


def _int(value, op: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise P.ProtocolError("bad_field", f"control '{op}' needs an integer value")
    return value


def _int_or_none(value, op: str) -> int | None:
    return None if value is None else _int(value, op)
