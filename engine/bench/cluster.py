"""`reverie bench cluster`: many players through the gateway on a simulated multi-node Ray cluster.

On this machine, a `ray.cluster_utils.Cluster` of `--nodes` nodes (one CPU each) runs one replica per
node; the gateway runs here, and so do the players: `--sessions` bot sessions through the gateway plus one
session straight to a replica that stays (the same replica at the same time, so the gateway's cost is the
difference; it plays until the removal). Each player asks for frames at `--rate` (the default model's real-time rate, as `reverie play`
asks), one in flight. After `--warmup-s`, the players play `--seconds`; half way, the last node is removed: its sessions
fail over to the others (a resume from their last frames).

JSON (last line): `replicas`, `sessions`, `served` (sessions that got frames), `lost` (sessions closed),
`fps_p50` (per-session frames per second before the removal), `latency_p50_ms` / `latency_p95_ms` through
the gateway and `direct_latency_p50_ms` / `direct_latency_p95_ms` on the same replica,
`failover_resume_s` (per moved session: the removal to its next frame), `others_fps_before` /
`others_fps_after` (sessions that did not move), and `refused` (further sessions opened after the run until
one is refused; `refused_message` says why).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np

from reverie.engine.bench.report import finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="world model (default: %(default)s)")
    parser.add_argument("--model-kwargs", default='{"pretrained": false, "config": "tiny"}', metavar="JSON",
                        help="factory arguments (default: the tiny random-weight default model, which 2 cores "
                             "can run as two replicas at speed)")
    parser.add_argument("--nodes", type=int, default=2, help="simulated nodes, one replica each (default: %(default)s)")
    parser.add_argument("--sessions", type=int, default=6, help="bot sessions through the gateway (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=16.0, help="measured play; the node goes half way (default: %(default)s)")
    parser.add_argument("--warmup-s", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=8.75,
                        help="frames per second each player asks for (default: %(default)s, the default model's "
                             "real-time rate)")
    parser.add_argument("--sessions-per-replica", type=int, default=8,
                        help="each replica's total budget, in sessions of the default policy (default: %(default)s)")


class _Player(threading.Thread):
    """One paced player: an action every 1/rate s (`input.pacing.StepPacer`, as the client paces) while it
    holds a credit; frame arrival times kept."""

    def __init__(self, endpoint: str, rate: float, stop: threading.Event, until: float = float("inf")) -> None:
        super().__init__(daemon=True)
        from reverie.input.net import Connection

        self.conn = Connection(endpoint, timeout_s=60)
        self.rate, self.stop_event = rate, stop
        self.arrivals: list[float] = []
        self.latency: list[float] = []
        self.measure_from = float("inf")
        self.until = until

    def run(self) -> None:
        from reverie.input.pacing import StepPacer

        conn, pacer = self.conn, StepPacer(self.rate)  # the client's own pacing
        while not self.stop_event.is_set() and conn.closed_reason is None and time.monotonic() < self.until:
            now = time.monotonic()
            if pacer.due(now) and conn.can_send():
                conn.send_action(1 if int(now) % 4 else 3)
                pacer.sent(now)
            frame = conn.poll(5)
            if frame is not None:
                t = time.monotonic()
                self.arrivals.append(t)
                ms = conn.mark_shown(frame)
                if t >= self.measure_from:
                    self.latency.append(ms)

    def fps(self, t0: float, t1: float) -> float:
        return sum(t0 <= t < t1 for t in self.arrivals) / max(1e-9, t1 - t0)


def run(args: argparse.Namespace) -> int:
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        print('reverie bench cluster: needs Ray; pip install "reverie[cluster]"')
        return 2
    from reverie.engine.cluster.gateway import Gateway, session_price
    from reverie.engine.cluster.pool import ReplicaPool
    from reverie.engine.ratelimit import Rate
    from reverie.input.net import Connection, ServerError

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(args.nodes - 1)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    kwargs = json.loads(args.model_kwargs)
    pool = gateway = None
    players: list[_Player] = []
    stop = threading.Event()
    try:
        probe = ReplicaPool(args.model, kwargs, _fields(None), replicas=1, cpus=1, threads=1)
        info = next(iter(probe.replicas.values())).info
        price = session_price(info)
        probe.shutdown()
        pool = ReplicaPool(args.model, kwargs, _fields(args.sessions_per_replica * price), replicas=args.nodes,
                           cpus=1, threads=1, dead_after_s=1.0)
        gateway = Gateway(pool, "tcp://127.0.0.1:0", all_rate=Rate(burst=64, per_s=64.0))  # the bench opens many
        serve = threading.Thread(target=gateway.serve_forever, kwargs={"poll_ms": 2}, daemon=True)
        serve.start()
        rate = args.rate
        players = [_Player(gateway.endpoint, rate, stop) for _ in range(args.sessions)]
        gone = workers[-1].node_id if workers else None
        first = next(h for h in pool.replicas.values() if h.info["node_id"] != gone)  # on a node that stays
        direct = _Player(first.info["endpoint"], rate, stop)
        for p in (*players, direct):
            p.start()
        t0 = time.monotonic() + args.warmup_s
        t_cut = t0 + args.seconds / 2
        for p in (*players, direct):
            p.measure_from = t0
        direct.until = t_cut  # the comparison is made before the removal; then it leaves the replica to the others
        time.sleep(max(0.0, t_cut - time.monotonic()))
        routes = {p: gateway.routes[p.conn.sock.getsockopt(__import__("zmq").ROUTING_ID)].replica
                  for p in players if p.conn.closed_reason is None}
        lost_node = next((h.name for h in pool.replicas.values() if h.info["node_id"] == gone), None)
        cut = time.monotonic()
        if workers:
            cluster.remove_node(workers[-1])
        time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
        t_end = time.monotonic()
        stop.set()
        for p in (*players, direct):
            p.join(timeout=10)
        moved = [p for p, r in routes.items() if r == lost_node]
        others = [p for p, r in routes.items() if r != lost_node]
        resume = [next((t - cut for t in p.arrivals if t > cut), float("nan")) for p in moved]
        on_first = [p for p, r in routes.items() if r == first.name]
        lat = [x for p in on_first for x in p.latency]
        refused, message = 0, ""
        extra = []
        while not refused and len(extra) < 64:  # open more sessions until one is refused
            try:
                extra.append(Connection(gateway.endpoint, timeout_s=30))
            except ServerError as exc:
                refused, message = 1, str(exc)
        result = {
            "model": args.model, "model_kwargs": kwargs, "nodes": args.nodes, "replicas": args.nodes,
            "sessions": args.sessions, "rate_hz": round(rate, 2),
            "served": sum(1 for p in players if p.arrivals), "lost": sum(1 for p in players if p.conn.closed_reason),
            "fps_p50": round(float(np.median([p.fps(t0, cut) for p in players])), 2),
            "latency_p50_ms": _p(lat, 50), "latency_p95_ms": _p(lat, 95),
            "direct_latency_p50_ms": _p(direct.latency, 50), "direct_latency_p95_ms": _p(direct.latency, 95),
            "moved_sessions": len(moved), "failover_resume_s": [round(r, 3) for r in resume],
            "others_fps_before": round(float(np.median([p.fps(t0, cut) for p in others])), 2) if others else None,
            "others_fps_after": round(float(np.median([p.fps(cut + 1.0, t_end) for p in others])), 2) if others else None,
            "sessions_opened_after": len(extra), "refused": refused, "refused_message": message,
            "cpus": os.cpu_count(), "gateway": dict(gateway.counters),
            "moved_errors": [[str(e) for e in p.conn.errors] for p in moved]}
        for c in extra:
            c.close()
    finally:
        stop.set()
        for p in players:
            p.conn.close()
        if gateway is not None:
            gateway.stop()
        if pool is not None:
            pool.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(f"{result['replicas']} replicas, {result['sessions']} sessions at {result['rate_hz']} fps: "
          f"{result['served']} served, {result['lost']} lost; per-session fps p50 {result['fps_p50']}")
    print(f"latency p50/p95: gateway {result['latency_p50_ms']} / {result['latency_p95_ms']} ms, direct "
          f"{result['direct_latency_p50_ms']} / {result['direct_latency_p95_ms']} ms (same replica, same time)")
    print(f"node removed: {result['moved_sessions']} sessions resumed in {result['failover_resume_s']} s; others "
          f"{result['others_fps_before']} -> {result['others_fps_after']} fps; then {result['sessions_opened_after']} "
          f"more sessions opened before one was refused ({result['refused_message'][:80]})")
    return finish(result, args.json)


def _fields(total: int | None) -> dict:
    return dict(policy="dual", policies=("dual", "window"), total_budget_bytes=total, max_sessions=16, ttl_s=30.0,
                pending_ttl_s=30.0, record_dir="recordings")


def _p(xs: list[float], q: float):
    return round(float(np.percentile(xs, q)), 1) if xs else None
