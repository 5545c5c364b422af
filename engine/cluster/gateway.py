"""The gateway: one client-facing socket, session affinity, and admission across replicas.

Clients speak the ordinary protocol (`engine.protocol`) to the gateway's ROUTER; `reverie client`,
`reverie play --connect` and the bot need nothing new. A hello is priced as the replicas' own servers
price it (`memory.session_bytes`: every byte the session will hold) and sent to the serving replica with
the most room for it, over a DEALER of its own (the client's routing id, so the replica's per-peer limits
still see one peer per client). From then on the session is pinned: every message of that client goes to
that replica and every message back is relayed unchanged, one ZeroMQ hop each way. The replica's server
admits the session again by the same bytes (the second phase), so the two cannot disagree for long. When
no replica has room the client is refused with a message that says so. A `stats` reply gains `cluster`:
sessions and bytes per replica.

Failover: the gateway keeps each session's hello and the last frames it relayed (`HISTORY_FRAMES`, with
their actions). When a replica dies, each of its sessions is told (`error` code `failover`) and resumed on
the replica with the most room: a hello with the same settings whose seed frame and history are those last
frames, which the new replica re-encodes into its memory (a recache); the client's unanswered actions are
sent again, so the player sees a pause and the same scene, not a new game. A session no replica has room
for is told `replica_lost` and closed.

Bad input: hellos are rate-limited per peer and in all before any socket is made for them; a client part
larger than a frame and a header drops its connection (`MAXMSGSIZE`, as on a server); a message from a
client without a session gets an error; a hello no replica welcomes within 10 s is closed. A session's own
bad messages are its replica's to judge (strikes, ttl), as on a single server.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from reverie.engine import protocol as P
from reverie.engine.curve import CurveError, CurveServer, is_loopback
from reverie.engine.poll_loop import PollLoop
from reverie.engine.ratelimit import Limiter, Rate

log = logging.getLogger("reverie.cluster")
CLIENT_HEADER_LIMIT = P.MAX_HEADER_BYTES
REPLY_HEADER_LIMIT = 1 << 20
WELCOME_TIMEOUT_S = 10.0  # a replica that does not answer a hello (opening or resuming) in this long
HISTORY_FRAMES = 16  # frames a session keeps here to resume from (the gateway's only per-session bytes)


@dataclass(eq=False)
class _Route:
    client: bytes
    replica: str
    dealer: object
    price: int
    ttl_s: float
    hello: P.Hello
    hello_parts: list
    welcomed: bool = False
    resuming: bool = False
    pending_since: float = field(default_factory=time.monotonic)  # opened or resumed, not yet welcomed
    last_seen: float = field(default_factory=time.monotonic)
    shown: deque = field(default_factory=lambda: deque(maxlen=HISTORY_FRAMES))  # (pixels, action) relayed
    unanswered: deque = field(default_factory=lambda: deque(maxlen=4))         # (seq, raw action header)


class Gateway(PollLoop):
    """Relay sessions between clients on `endpoint` and the replicas of `pool` (`pool.ReplicaPool`).

    `endpoint` follows the single server's rule: loopback needs no keys, anything else needs
    `curve_secret` (and optionally `allow_clients`), or `CurveError`.
    """

    def __init__(self, pool, endpoint: str = "tcp://127.0.0.1:5555", *, curve_secret: str | None = None,
                 allow_clients: str | None = None, peer_rate: Rate = Rate(burst=2, per_s=0.2),
                 all_rate: Rate = Rate(burst=8, per_s=4.0), context=None) -> None:
        import zmq

        if curve_secret is None and not is_loopback(endpoint):
            raise CurveError(f"binding {endpoint} lets other machines connect, so it needs CURVE keys "
                             "(`reverie keys --out keys/`, then `--keys keys/server.key_secret`)")
        self._zmq = zmq
        self.pool = pool
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self._curve = CurveServer(self.ctx, curve_secret, allow_clients) if curve_secret else None
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        serving = pool.serving()  # no part a client sends is larger than a frame (a seed frame) and a header
        frame_bytes = max((math.prod(h.info["spec"].frame_shape) for h in serving), default=0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max(1 << 16, frame_bytes + P.MAX_HEADER_BYTES))
        self.limiter = Limiter(peer_rate, all_rate)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if self._curve is not None:
            self._curve.apply(self.sock)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.routes: dict[bytes, _Route] = {}
        self._by_dealer: dict[object, _Route] = {}
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self._dead: deque = deque()
        pool.on_dead = self._dead.append  # called from the pool's watcher thread; handled in the loop
        self._last_sweep = time.monotonic()
        self.counters = {"sessions_routed": 0, "refused": 0, "failovers": 0, "replica_lost": 0, "relayed_in": 0,
                         "relayed_out": 0, "rate_limited": 0}

    # --- the loop ------------------------------------------------------------------------------------
    POLL_MS = 20

    def run_once(self, poll_ms: int = POLL_MS) -> None:
        while self._dead:
            self._replica_lost(self._dead.popleft())
        now = time.monotonic()
        if now - self._last_sweep > 0.5:
            self._last_sweep = now
            self._sweep()
        zmq = self._zmq
        for sock, _ in self.poller.poll(poll_ms):
            if sock is self.sock:
                for _ in range(256):
                    try:
                        parts = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._from_client(parts)
            else:
                for _ in range(256):
                    route = self._by_dealer.get(sock)
                    if route is None:  # dropped meanwhile (bye, refusal, a lost replica): its socket is closed
                        break
                    try:
                        parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._from_replica(route, parts)

    # --- client -> replica ---------------------------------------------------------------------------
    def _from_client(self, parts) -> None:
        cid = parts[0].bytes
        route = self.routes.get(cid)
        if route is not None:
            self.counters["relayed_in"] += 1
            route.last_seen = time.monotonic()
            if len(parts) == 2:  # keep the actions in flight, to send again if the replica dies
                try:
                    msg = P.decode(parts[1].buffer, CLIENT_HEADER_LIMIT)
                except P.ProtocolError:
                    msg = None  # the replica answers it
                if isinstance(msg, P.Action):
                    route.unanswered.append((msg.seq, parts[1].bytes))
            if not route.resuming:
                route.dealer.send_multipart(parts[1:], copy=False)
            return
        if len(parts) < 2:
            return self._reply(cid, P.Error(code="malformed", message="empty message"))
        try:
            msg = P.decode(parts[1].buffer, CLIENT_HEADER_LIMIT)
        except P.ProtocolError as exc:
            return self._reply(cid, P.Error(code=exc.code, message=str(exc)))
        if not isinstance(msg, P.Hello):
            return self._reply(cid, P.Error(code="no_session", message="no session for this client: send hello first"))
        self._open(cid, msg, parts)

    def _open(self, cid: bytes, hello: P.Hello, parts) -> None:
        ok, why = self.limiter.acquire(cid, time.monotonic())  # before any socket is made for it
        if not ok:
            self.counters["rate_limited"] += 1
            return self._reply(cid, P.Error(code="rate_limited", message=why))
        serving = self.pool.serving()
        if not serving:
            return self._refuse(cid, "no replica is serving")
        try:
            price = session_price(serving[0].info, hello.policy, hello.budget_bytes)
        except Exception as exc:  # unknown policy, a budget the policy cannot fit: the client's request
            return self._refuse(cid, f"cannot start a session: {exc}")
        h, why = self._choose(serving, price)
        if h is None:
            return self._refuse(cid, why)
        ttl = float(h.info["config"].get("ttl_s", 10.0))
        route = _Route(cid, h.name, None, price, ttl_s=ttl, hello=hello, hello_parts=[p.bytes for p in parts[1:]])
        self._connect(route, h, route.hello_parts)
        self.counters["sessions_routed"] += 1

    def _connect(self, route: _Route, h, parts: list) -> None:
        """Route `route` to replica `h` over a new DEALER and send it `parts` (a hello)."""
        route.replica, route.dealer = h.name, self._dealer(route.client, h.info)
        self.routes[route.client] = route
        self._by_dealer[route.dealer] = route
        self.poller.register(route.dealer, self._zmq.POLLIN)
        route.dealer.send_multipart(parts, copy=False)

    def _choose(self, serving: list, price: int):
        """The serving replica with the most free bytes that fit `price` and a free slot, or (None, why)."""
        choice, why = None, []
        for h in serving:
            held = [r for r in self.routes.values() if r.replica == h.name]
            free = h.load.get("total_bytes", 0) - sum(r.price for r in held)
            if len(held) >= h.load.get("max_sessions", 0):
                why.append(f"{h.name}: all {len(held)} session slots taken")
            elif free < price:
                why.append(f"{h.name}: {free:,} bytes free")
            elif choice is None or free > choice[1]:
                choice = (h, free)
        if choice is None:
            return None, f"no replica has room for a session of {price:,} bytes ({'; '.join(why)})"
        return choice[0], ""

    def _dealer(self, cid: bytes, info: dict):
        zmq = self._zmq
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.ROUTING_ID, cid)
        dealer.setsockopt(zmq.LINGER, 0)
        if info.get("public_key"):  # a replica on another node: CURVE, with its key from Ray
            public, secret = zmq.curve_keypair()
            dealer.curve_serverkey = _public_key(info["public_key"])
            dealer.curve_publickey, dealer.curve_secretkey = public, secret
        dealer.connect(info["endpoint"])
        return dealer

    # --- replica -> client ---------------------------------------------------------------------------
    def _from_replica(self, route: _Route, parts) -> None:
        self.counters["relayed_out"] += 1
        out = [route.client, *parts]
        try:
            msg = P.decode(parts[0].buffer, REPLY_HEADER_LIMIT)
        except P.ProtocolError:
            msg = None
        if isinstance(msg, P.Stats):
            data = dict(msg.data)
            data["cluster"] = self.cluster_stats()
            out = [route.client, P.encode(P.Stats(data)), *parts[1:]]
        elif isinstance(msg, P.Frame) and len(parts) == 2:
            route.shown.append((parts[1].bytes, msg.action))
            while route.unanswered and route.unanswered[0][0] <= msg.seq:
                route.unanswered.popleft()
        elif isinstance(msg, P.Welcome) and route.resuming:  # the client has its welcome: resume quietly
            route.resuming, route.welcomed = False, True
            for _, raw in route.unanswered:
                route.dealer.send(raw)
            return
        elif isinstance(msg, P.Error) and route.resuming:
            return self._lost(route, f"could not resume it: {msg.message}")
        self.sock.send_multipart(out, copy=False)
        if isinstance(msg, P.Welcome):
            route.welcomed = True
        elif isinstance(msg, P.Bye) or (isinstance(msg, P.Error) and not route.welcomed):
            self._drop(route)  # closed, or never opened (the replica refused the hello)

    def _sweep(self) -> None:
        """Routes of clients silent past the replica's ttl: it closed their sessions without a word."""
        now = time.monotonic()
        for route in [r for r in self.routes.values() if now - r.last_seen > r.ttl_s + 1.0]:
            self._drop(route)
        for route in [r for r in self.routes.values() if not r.welcomed and now - r.pending_since > WELCOME_TIMEOUT_S]:
            self._lost(route, f"its replica ({route.replica}) did not welcome it within {WELCOME_TIMEOUT_S:g} s")

    # --- failures, stats -----------------------------------------------------------------------------
    def _replica_lost(self, handle) -> None:
        lost = [r for r in self.routes.values() if r.replica == handle.name]
        log.warning("%s lost with %d sessions", handle.name, len(lost))
        for route in lost:
            self._resume(route, handle.name)

    def _resume(self, route: _Route, dead: str) -> None:
        """Move a session of a dead replica to the one with the most room, from its last shown frames."""
        self._drop(route)
        h, why = self._choose(self.pool.serving(), route.price)
        if h is None or not route.welcomed:
            return self._lost(route, f"the replica holding it ({dead}) stopped and {why or 'it never opened'}")
        if route.shown:
            frames = [np.frombuffer(px, np.uint8) for px, _ in route.shown]
            hello = dataclasses.replace(route.hello, seed_frame=list(h.info["spec"].frame_shape), history=len(frames) - 1,
                                        history_actions=[a for _, a in list(route.shown)[1:]])
            parts = [P.encode(hello), *(f.tobytes() for f in frames)]  # seed frame, then one part per frame
        else:
            parts = route.hello_parts
        route.resuming, route.welcomed, route.pending_since = True, False, time.monotonic()
        self._reply(route.client, P.Error(code="failover", message=f"the replica holding this session ({dead}) "
                                          f"stopped; resuming it on {h.name} from its last {len(route.shown)} frames"))
        self._connect(route, h, parts)
        self.counters["failovers"] += 1

    def _lost(self, route: _Route, why: str) -> None:
        self._reply(route.client, P.Error(code="replica_lost", message=f"session closed: {why}"))
        self._reply(route.client, P.Bye(reason="replica lost"))
        self._drop(route)
        self.counters["replica_lost"] += 1

    def cluster_stats(self) -> dict:
        """Per replica: sessions routed there, the bytes reserved for them, its total, node, state."""
        out = {}
        for h in list(self.pool.replicas.values()):
            held = [r for r in self.routes.values() if r.replica == h.name]
            out[h.name] = {"sessions": len(held), "reserved_bytes": sum(r.price for r in held),
                           "total_bytes": h.load.get("total_bytes"), "node": h.info.get("node_ip"),
                           "state": "draining" if h.draining else ("serving" if h.alive else "dead")}
        return out

    def _refuse(self, cid: bytes, message: str) -> None:
        self.counters["refused"] += 1
        self._reply(cid, P.Error(code="refused", message=message))

    def _reply(self, cid: bytes, msg) -> None:
        self.sock.send_multipart([cid, P.encode(msg)])

    def _drop(self, route: _Route) -> None:
        if self.routes.get(route.client) is route:
            self.routes.pop(route.client)
        self._by_dealer.pop(route.dealer, None)
        try:
            self.poller.unregister(route.dealer)
        except KeyError:
            pass
        route.dealer.close(linger=0)

    def close(self) -> None:
        for route in list(self.routes.values()):
            self._drop(route)
        self.sock.close(linger=0)
        if self._curve is not None:
            self._curve.stop()
        if self._own_ctx:
            self.ctx.term()


def session_price(info: dict, policy: str = "", budget_bytes: int = 0) -> int:
    """Every byte a session asking for `policy` and `budget_bytes` ("" / 0: the replica's defaults) will hold on
    a replica described by `info` (`Replica.info`), as that replica's server prices it."""
    from reverie.memory import session_bytes

    return session_bytes(info["spec"], policy or info["policy"], budget_bytes or info["budget_bytes"],
                         recache_chunks=info["recache_chunks"], latent_dtype=info["latent_dtype"],
                         device=info["device"]).total


def _public_key(certificate_text: str) -> bytes:
    """The Z85 public key in a ZeroMQ certificate file's text (`engine.curve.make_keys` writes them)."""
    for line in certificate_text.splitlines():
        line = line.strip()
        if line.startswith("public-key"):
            return line.split("=", 1)[1].strip().strip('"').encode()
    raise CurveError("the replica's certificate holds no public key")
