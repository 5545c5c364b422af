"""`reverie serve --cluster [ADDRESS]`: the gateway in this process, replicas placed by Ray.

`ADDRESS` is a Ray cluster's address (`ray://...`, `HOST:PORT`, `auto`); without one the gateway joins the
cluster `RAY_ADDRESS` names, else starts a local one on this machine (Ray's dashboard stays off unless
`--dashboard`). The other `reverie serve` options apply to every replica.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def ray_init(address: str, dashboard: bool = False, runtime_env: dict | None = None, **kw):
    """Join `address` (or `RAY_ADDRESS`, or a new local cluster when both are empty)."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    return ray.init(address=address, include_dashboard=dashboard, log_to_driver=False,
                    runtime_env=runtime_env, ignore_reinit_error=True, **kw)


def run_cluster(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401
    except ImportError:
        print('reverie serve --cluster: needs Ray; pip install "reverie[cluster]"', file=sys.stderr)
        return 2
    import json

    from reverie.engine.cluster.control import ControlLoop, start_control
    from reverie.engine.cluster.gateway import Gateway
    from reverie.engine.cluster.pool import ReplicaPool
    from reverie.engine.commands.serve import server_fields
    from reverie.engine.curve import CurveError

    ray_init(args.cluster, args.dashboard, namespace="reverie")
    try:
        pool = ReplicaPool(args.model, json.loads(args.model_kwargs), server_fields(args, args.budget_bytes),
                           replicas=args.replicas, cpus=args.replica_cpus, gpus=args.replica_gpus,
                           threads=args.threads, budget_frames=args.budget_frames)
    except Exception as exc:
        print(f"reverie serve --cluster: the replicas did not start: {exc}", file=sys.stderr)
        return 2
    try:
        gateway = Gateway(pool, args.endpoint, curve_secret=args.keys, allow_clients=args.allow_clients)
    except CurveError as exc:
        pool.shutdown()
        print(f"reverie serve --cluster: {exc}", file=sys.stderr)
        return 2
    control = ControlLoop(start_control(args.replicas), pool, lambda: {"endpoint": gateway.endpoint,
                                                                      "replicas": gateway.cluster_stats()})
    signal.signal(signal.SIGINT, lambda *_: gateway.stop())
    signal.signal(signal.SIGTERM, lambda *_: gateway.stop())
    print(f"reverie serve: {args.model} on {gateway.endpoint} through a gateway, {len(pool.replicas)} replicas: "
          + ", ".join(f"{h.name} ({h.info['node_ip']}, {h.load.get('total_bytes', 0):,} bytes)"
                      for h in pool.replicas.values()), file=sys.stderr, flush=True)
    try:
        gateway.serve_forever()
    finally:
        control.stop()
        pool.shutdown()
    print("reverie serve --cluster: stopped", file=sys.stderr)
    return 0
