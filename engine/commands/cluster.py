"""`reverie cluster scale N` / `reverie cluster status`: change or read a running `reverie serve --cluster`.

Run on any machine of the Ray cluster (`--address`, default: `RAY_ADDRESS`, else `auto`). `scale` sets how
many replicas serve: more are started; fewer drain, newest first (no new sessions; each stops once its
sessions end). `status` prints what the gateway last reported, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("scale", "status"))
    parser.add_argument("replicas", nargs="?", type=int, help="with scale: the number of replicas to serve")
    parser.add_argument("--address", default=None, help="the Ray cluster (default: RAY_ADDRESS, else auto)")


def run(args: argparse.Namespace) -> int:
    try:
        import ray
    except ImportError:
        print('reverie cluster: needs Ray; pip install "reverie[cluster]"', file=sys.stderr)
        return 2
    from reverie.engine.cluster.control import NAMESPACE, get_control

    if args.action == "scale" and (args.replicas is None or args.replicas < 1):
        print("reverie cluster scale: give the number of replicas (>= 1)", file=sys.stderr)
        return 2
    if not ray.is_initialized():
        try:
            ray.init(address=args.address or os.environ.get("RAY_ADDRESS") or "auto", namespace=NAMESPACE,
                     log_to_driver=False)
        except Exception as exc:
            print(f"reverie cluster: no Ray cluster to join: {exc}", file=sys.stderr)
            return 2
    try:
        control = get_control()
    except ValueError as exc:
        print(f"reverie cluster: {exc}", file=sys.stderr)
        return 2
    if args.action == "scale":
        print(f"reverie cluster: {ray.get(control.scale.remote(args.replicas))} replicas wanted", file=sys.stderr)
    print(json.dumps(ray.get(control.status.remote())))
    return 0
