"""Serving through the cluster gateway: replicas placed by Ray (a local Ray here), sessions spread and pinned,
admission across replicas by the bytes a session holds, a dead replica's sessions told, CURVE on the
gateway. Skipped without Ray (`pip install "reverie[cluster]"`)."""

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from reverie.engine.cluster.gateway import Gateway  # noqa: E402
from reverie.engine.cluster.pool import ReplicaPool  # noqa: E402
from reverie.engine.cluster.serve import ray_init  # noqa: E402
from reverie.engine.curve import CurveError, make_keys  # noqa: E402
from reverie.input.bot import run_bot  # noqa: E402
from reverie.input.net import Connection, ServerError  # noqa: E402
from reverie.memory import session_bytes  # noqa: E402
from tinyworld import TinyWorld  # noqa: E402

HERE = str(Path(__file__).parent)
BUDGET = 64 * TinyWorld().spec.kv_bytes_per_frame
PRICE = session_bytes(TinyWorld().spec, "window", BUDGET).total


@pytest.fixture(scope="module")
def local_ray():
    path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH", "")) if p)
    ray_init("", runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}}, num_cpus=4)
    yield
    ray.shutdown()


def fields(tmp_path, sessions_per_replica: float, **kw) -> dict:
    return dict(policy="window", policies=("window", "full"), budget_bytes=BUDGET,
                total_budget_bytes=int(PRICE * sessions_per_replica), max_sessions=4, ttl_s=20.0,
                pending_ttl_s=10.0, record_dir=str(tmp_path), **kw)


class GatewayThread:
    def __init__(self, pool, endpoint="tcp://127.0.0.1:0", **kw):
        self.gateway = Gateway(pool, endpoint, **kw)
        self.endpoint = self.gateway.endpoint
        self.thread = threading.Thread(target=self.gateway.serve_forever, kwargs={"poll_ms": 5}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.gateway.stop()
        self.thread.join(timeout=10)


def replica_of(conn, gw) -> str:
    return gw.gateway.routes[conn.sock.getsockopt(__import__("zmq").ROUTING_ID)].replica


def test_sessions_spread_over_replicas_stay_pinned_and_are_refused_when_none_has_room(local_ray, tmp_path):
    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 2.5), replicas=2, cpus=1, threads=1)
    try:
        with GatewayThread(pool) as gw:
            conns = [Connection(gw.endpoint, timeout_s=30) for _ in range(4)]
            for c in conns:
                assert run_bot(c, 3, [1, 3])["frames"] == 3
            placed = [replica_of(c, gw) for c in conns]
            assert sorted(placed) == ["replica-0", "replica-0", "replica-1", "replica-1"]  # the most room first
            for c in conns:                                  # more frames: each stays where it started
                assert run_bot(c, 3, [7])["frames"] == 3
            assert [replica_of(c, gw) for c in conns] == placed
            with pytest.raises(ServerError, match="no replica has room"):
                Connection(gw.endpoint, timeout_s=30)
            conns[0].control("stats")
            deadline = time.monotonic() + 5
            while "cluster" not in conns[0].stats and time.monotonic() < deadline:
                conns[0].poll(50)
            cluster = conns[0].stats["cluster"]
            assert {name: r["sessions"] for name, r in cluster.items()} == {"replica-0": 2, "replica-1": 2}
            assert all(r["reserved_bytes"] == 2 * PRICE and r["state"] == "serving" for r in cluster.values())
            conns[1].close()                                 # a bye frees its place for a new player
            deadline = time.monotonic() + 5
            while len(gw.gateway.routes) > 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            with Connection(gw.endpoint, timeout_s=30) as late:
                assert run_bot(late, 2, None)["frames"] == 2 and replica_of(late, gw) == placed[1]
            for c in conns:
                c.close()
    finally:
        pool.shutdown()


def test_a_dead_replicas_session_resumes_elsewhere_from_its_last_frames(local_ray, tmp_path):
    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 2.5), replicas=2, cpus=1, threads=1)
    try:
        with GatewayThread(pool) as gw:
            a, b = Connection(gw.endpoint, timeout_s=30), Connection(gw.endpoint, timeout_s=30)
            run_bot(a, 6, [1, 3]), run_bot(b, 2, [1])
            before = a.latest.pixels.copy()
            dead, alive = replica_of(a, gw), replica_of(b, gw)
            assert dead != alive
            t0 = time.monotonic()
            ray.kill(pool.replicas[dead].actor)
            while not any(e.code == "failover" for e in a.errors) and time.monotonic() - t0 < 5:
                a.poll(50)
            assert time.monotonic() - t0 < 2.0                  # told within 2 s
            a.send_action(1) if a.can_send() else None
            got = None
            while got is None and time.monotonic() - t0 < 10:
                got = a.poll(100)
            assert got is not None and a.closed_reason is None  # a pause, not a crash
            assert replica_of(a, gw) == alive
            diff = np.abs(got.pixels.astype(int) - before.astype(int)).mean()
            fresh = np.abs(TinyWorld().seed_frame().astype(int) - before.astype(int)).mean()
            assert diff < fresh, (diff, fresh)                  # it goes on from where it was
            assert run_bot(a, 4, [3])["frames"] == 4 and run_bot(b, 4, [3])["frames"] == 4
            assert gw.gateway.cluster_stats()[dead]["state"] == "dead" and gw.gateway.counters["failovers"] == 1
            a.close(), b.close()
    finally:
        pool.shutdown()


def test_a_dead_replicas_session_is_closed_when_no_replica_has_room(local_ray, tmp_path):
    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 1.5), replicas=2, cpus=1, threads=1)
    try:
        with GatewayThread(pool) as gw:
            a, b = Connection(gw.endpoint, timeout_s=30), Connection(gw.endpoint, timeout_s=30)
            run_bot(a, 2, [1]), run_bot(b, 2, [1])
            t0 = time.monotonic()
            ray.kill(pool.replicas[replica_of(a, gw)].actor)
            while a.closed_reason is None and time.monotonic() - t0 < 5:
                a.poll(50)
            assert a.closed_reason is not None and time.monotonic() - t0 < 2.0
            assert any(e.code == "replica_lost" and "no replica has room" in str(e) for e in a.errors)
            assert run_bot(b, 5, [3])["frames"] == 5           # the other replica's player is not disturbed
            a.close(), b.close()
    finally:
        pool.shutdown()


def test_the_gateway_needs_keys_beyond_loopback_and_refuses_clients_without_them(local_ray, tmp_path):
    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 2), replicas=1, cpus=1, threads=1)
    try:
        with pytest.raises(CurveError, match="CURVE"):
            Gateway(pool, "tcp://0.0.0.0:0")
        public, secret = make_keys(tmp_path / "keys")
        with GatewayThread(pool, endpoint="tcp://0.0.0.0:0", curve_secret=str(secret)) as gw:
            endpoint = "tcp://127.0.0.1:" + gw.endpoint.rsplit(":", 1)[1]   # bound on every interface
            with pytest.raises(TimeoutError):
                Connection(endpoint, timeout_s=1.5)        # no key: no handshake, nothing reaches a replica
            assert gw.gateway.routes == {}
            with Connection(endpoint, server_key=str(public), timeout_s=30) as c:
                assert run_bot(c, 2, [1])["frames"] == 2
    finally:
        pool.shutdown()


def test_scaling_while_serving_adds_replicas_and_drains_the_newest(local_ray, tmp_path, capsys):
    from reverie.engine.cli import main
    from reverie.engine.cluster.control import ControlLoop, start_control

    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 2.5), replicas=1, cpus=1, threads=1)
    control = None
    try:
        with GatewayThread(pool) as gw:
            control = ControlLoop(start_control(1), pool, lambda: {"replicas": gw.gateway.cluster_stats()},
                                  every_s=0.2)
            first = Connection(gw.endpoint, timeout_s=30)
            run_bot(first, 2, [1])
            assert main(["cluster", "scale", "2"]) == 0             # the command reaches the running gateway
            deadline = time.monotonic() + 60
            while len(pool.serving()) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [h.name for h in pool.serving()] == ["replica-0", "replica-1"]
            second = Connection(gw.endpoint, timeout_s=30)          # the new replica has the most room
            run_bot(second, 2, [1])
            assert replica_of(second, gw) == "replica-1"
            assert main(["cluster", "scale", "1"]) == 0
            deadline = time.monotonic() + 10
            while len(pool.serving()) > 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [h.name for h in pool.serving()] == ["replica-0"]
            assert run_bot(second, 3, [3])["frames"] == 3           # draining: its session plays on ...
            third = Connection(gw.endpoint, timeout_s=30)           # ... but new ones go elsewhere
            run_bot(third, 1, [1])
            assert replica_of(third, gw) == "replica-0"
            second.close()                                          # its last session ends: it stops
            deadline = time.monotonic() + 10
            while "replica-1" in pool.replicas and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "replica-1" not in pool.replicas
            deadline, status = time.monotonic() + 5, {}
            while set(status.get("replicas", ())) != {"replica-0"} and time.monotonic() < deadline:
                capsys.readouterr()                                 # the gateway reports every 0.2 s here
                assert main(["cluster", "status"]) == 0
                status = __import__("json").loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert status["wanted_replicas"] == 1 and set(status["replicas"]) == {"replica-0"}
            first.close(), third.close()
    finally:
        if control is not None:
            control.stop()
        pool.shutdown()


def test_replicas_sharing_a_node_split_its_memory(local_ray, tmp_path):
    from reverie.engine.capacity import DEFAULT_TOTAL_FRACTION, total_budget

    config = {**fields(tmp_path, 1), "total_budget_bytes": None}
    pool = ReplicaPool("tinyworld:build", {}, config, replicas=1, cpus=1, threads=1)   # 1 of the node's 4 CPUs
    try:
        whole = total_budget(None, "cpu", DEFAULT_TOTAL_FRACTION).bytes
        (replica,) = pool.replicas.values()
        assert 0.2 < replica.load["total_bytes"] / whole < 0.3
    finally:
        pool.shutdown()


def test_a_replica_on_another_node_binds_its_address_with_curve_and_the_gateway_reaches_it(tmp_path):
    """The cross-node path without Ray: a replica told the gateway is elsewhere binds its node's address with
    its own CURVE keys; a plain client cannot reach it; the gateway, given its public key, can."""
    from reverie.engine.cluster.pool import ReplicaHandle
    from reverie.engine.cluster.replica import Replica
    from reverie.engine.curve import is_loopback

    replica = Replica("replica-x", "tinyworld:build", {}, fields(tmp_path, 2), gateway_ip="203.0.113.9", threads=1)
    try:
        info = replica.info()
        if is_loopback(info["endpoint"]):
            pytest.skip("this machine's node address is loopback")
        assert info["public_key"] and "public-key" in info["public_key"]
        with pytest.raises(TimeoutError):
            Connection(info["endpoint"], timeout_s=1.5)                  # no key: nothing reaches its server
        handle = ReplicaHandle("replica-x", None, info, load=replica.load())

        class OnePool:
            replicas = {"replica-x": handle}
            on_dead = None

            def serving(self):
                return [handle]

        with GatewayThread(OnePool()) as gw, Connection(gw.endpoint, timeout_s=30) as c:
            assert run_bot(c, 2, [1])["frames"] == 2
    finally:
        replica.stop()


def test_the_control_loop_replaces_a_dead_replica(local_ray, tmp_path):
    from reverie.engine.cluster.control import ControlLoop, start_control

    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 2), replicas=2, cpus=1, threads=1, dead_after_s=1.0)
    control = ControlLoop(start_control(2), pool, lambda: {}, every_s=0.2)
    try:
        ray.kill(pool.replicas["replica-0"].actor)
        deadline = time.monotonic() + 60
        while [h.name for h in pool.serving()] != ["replica-1", "replica-2"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [h.name for h in pool.serving()] == ["replica-1", "replica-2"]   # Ray placed a new one
    finally:
        control.stop()
        pool.shutdown()


def test_the_gateway_survives_garbage_and_hello_floods_and_its_player_plays_on(local_ray, tmp_path):
    import random

    import msgpack
    import zmq

    from reverie.engine import protocol as P
    from serving import raw_socket

    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 4), replicas=1, cpus=1, threads=1)
    try:
        with GatewayThread(pool) as gw, Connection(gw.endpoint, timeout_s=30) as player:
            run_bot(player, 2, [1])
            rng = random.Random(0)
            socks = [raw_socket(gw.endpoint) for _ in range(3)]
            garbage = [b"\xc1", b"", msgpack.packb([1, 2]), msgpack.packb({"k": "action", "v": 2, "seq": "x"}),
                       P.encode(P.Action(seq=1)), P.encode(P.Frame()), bytes(70_000)]
            for i in range(300):                                  # bounded: 300 bad messages
                socks[i % 3].send_multipart([rng.choice(garbage)] + ([b"x"] if i % 7 == 0 else []))
            flood = []
            for _ in range(20):                                   # 20 hellos from 20 peers at once
                s = raw_socket(gw.endpoint)
                s.send_multipart([P.encode(P.Hello())])
                flood.append(s)
            codes = []
            for s in flood:
                if s.poll(5000):
                    codes.append(P.decode(s.recv_multipart()[0], 1 << 20).__class__.__name__)
            assert run_bot(player, 10, [3])["frames"] == 10       # the player got every frame
            assert codes.count("Welcome") <= 8 and gw.gateway.counters["rate_limited"] >= 12
            assert len(gw.gateway.routes) <= 9 and gw.thread.is_alive()
            for s in socks + flood:
                s.close()
    finally:
        pool.shutdown()
