"""`reverie serve`: serve one world model over ZeroMQ (one process per model, many sessions).

Binds 127.0.0.1 unless `--endpoint` says otherwise. SIGINT/SIGTERM finish every recording and exit.
Sessions start from the client's seed frame, else `--seed-frame`, else the model's own seed frame, else
the real game's first frame at the model's resolution (needs vizdoom).

Each session is priced by every byte it will hold (KV cache, spatial archive, buffers) and admitted only
if all sessions together stay within the total budget: `--total-budget-bytes`, by default half the memory
free at start (the CUDA device's when the model is on CUDA, else the machine's available memory).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from reverie.engine.capacity import DEFAULT_TOTAL_FRACTION


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default",
                        help="registered world model name, or module:factory (default: %(default)s)")
    parser.add_argument("--model-kwargs", default="{}", metavar="JSON",
                        help='keyword arguments for the model factory, e.g. \'{"pretrained": false, "config": "tiny"}\'')
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint to bind (default: %(default)s)")
    parser.add_argument("--policy", default=None, help="memory policy of new sessions (default: the first of --policies)")
    parser.add_argument("--policies", default="dual,window,deep-sink,quant",
                        help="comma-separated policies clients may cycle through live (default: %(default)s)")
    parser.add_argument("--budget-frames", type=int, default=None,
                        help="per-session KV budget in frames of full-precision K/V (default: the memory's default, 32)")
    parser.add_argument("--budget-bytes", type=int, default=None, help="per-session KV budget in bytes (overrides --budget-frames)")
    parser.add_argument("--total-budget-bytes", type=int, default=None,
                        help="every byte all sessions hold together (KV cache, spatial archive, buffers); a session "
                             "that would not fit is refused (default: "
                             f"{DEFAULT_TOTAL_FRACTION * 100:.0f}%% of the memory free at start: the CUDA device's free "
                             "memory when the model is on CUDA, else the machine's available memory)")
    parser.add_argument("--max-sessions", type=int, default=8)
    parser.add_argument("--ttl", type=float, default=10.0, help="seconds of silence before a session is freed")
    parser.add_argument("--pending-ttl", type=float, default=2.0,
                        help="seconds after its welcome within which a session must send an action, or it is freed "
                             "(default: %(default)s)")
    parser.add_argument("--record-dir", default="recordings", help="where recordings go (default: %(default)s)")
    parser.add_argument("--seed-frame", default=None, help="a .npy uint8 [H, W, 3] frame or a rollout directory")
    parser.add_argument("--map", default=None, help="real-game map for the default seed frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: one less than the CPU cores, so the client keeps one)")
    parser.add_argument("--keys", default=None, metavar="SECRET_FILE",
                        help="the server's CURVE secret key (`reverie keys`); required to bind anything but loopback")
    parser.add_argument("--allow-clients", default=None, metavar="DIR",
                        help="with --keys: admit only clients whose public keys are in DIR (default: any client "
                             "that has the server's public key)")
    parser.add_argument("--log-level", default="INFO")
    cluster = parser.add_argument_group("cluster (needs Ray: pip install \"reverie[cluster]\")")
    cluster.add_argument("--cluster", nargs="?", const="", default=None, metavar="ADDRESS",
                         help="serve through a gateway in front of replicas placed by Ray, on the cluster at ADDRESS "
                              "(without one: RAY_ADDRESS, else a local cluster)")
    cluster.add_argument("--replicas", type=int, default=1, help="model replicas (default: %(default)s)")
    cluster.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray gives each replica (default: %(default)s)")
    cluster.add_argument("--replica-gpus", type=float, default=0.0, help="GPUs Ray gives each replica (default: %(default)s)")
    cluster.add_argument("--dashboard", action="store_true", help="start Ray's dashboard (off by default)")


def load_world(name: str, kwargs: dict):
    """A registered model by name, or `module:factory` (handy for test and plug-in models)."""
    from reverie.world.registry import load_model

    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)(**kwargs)
    return load_model(name, **kwargs)


def seed_frame_source(model, path: str | None, game_map: str | None):
    """`shape -> uint8 [H, W, 3]`: the frame a session starts from when its client sends none."""
    import numpy as np

    shape = tuple(model.spec.frame_shape)
    if path is not None:
        p = Path(path)
        if p.is_dir():
            from reverie.engine.rollout import read_rollout

            frame = np.ascontiguousarray(read_rollout(p, mmap=True).frames[0])
        else:
            frame = np.load(p, allow_pickle=False)
        if frame.dtype != np.uint8 or frame.shape != shape:
            raise SystemExit(f"reverie serve: seed frame {path} is {frame.dtype} {frame.shape}, the model needs uint8 {shape}")
        return lambda _shape: frame
    own = getattr(model, "seed_frame", None)
    if callable(own):
        frame = np.ascontiguousarray(own(), dtype=np.uint8)
        return lambda _shape: frame
    cache: dict = {}

    def from_game(_shape):
        if "frame" not in cache:
            cache["frame"] = real_game_frame(shape, game_map)
        return cache["frame"]

    return from_game


def server_fields(args: argparse.Namespace, budget: int | None) -> dict:
    """The `ServerConfig` fields `reverie serve`'s options set, but for its endpoint and keys (a cluster's
    replicas share these and bind their own)."""
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    return dict(policy=args.policy or policies[0], policies=policies, budget_bytes=budget,
                total_budget_bytes=args.total_budget_bytes, max_sessions=args.max_sessions, ttl_s=args.ttl,
                pending_ttl_s=args.pending_ttl, record_dir=args.record_dir, seed=args.seed)


def places(model, game_map: str | None, prewarm: bool = False):
    """The server's places (`engine.places.RealGamePlaces`) for the model's frame shape (`prewarm`: start
    making the home map's now), or None when the real game's maps cannot be loaded (then a scene must
    bring its frame)."""
    from reverie.engine.places import RealGamePlaces

    try:
        return RealGamePlaces(model.spec.frame_shape, game_map, prewarm=prewarm)
    except Exception:  # e.g. an unknown --map: the seed frame says so already
        return None


def real_game_frame(shape, game_map: str | None = None, seed: int = 0):
    """The real game's first frame at `shape` = (H, W, 3)."""
    from reverie.world.games.doom import DoomConfig, DoomGame

    kw = {"map": game_map} if game_map else {}
    with DoomGame(DoomConfig(resolution=(shape[1], shape[0]), **kw)) as game:
        return game.reset(seed).frame.copy()


def run(args: argparse.Namespace) -> int:
    import gc
    import signal

    import torch

    from reverie.engine.server import Server, ServerConfig

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.cluster is not None:
        from reverie.engine.cluster.serve import run_cluster

        return run_cluster(args)
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) - 1))
    try:
        kwargs = json.loads(args.model_kwargs)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"reverie serve: --model-kwargs is not JSON: {exc}") from None
    try:
        model = load_world(args.model, kwargs)
    except Exception as exc:  # unknown name, missing weights, bad checkpoint: say so and stop
        print(f"reverie serve: cannot load model '{args.model}': {exc}", file=sys.stderr)
        return 2
    frames = args.budget_frames
    if frames is None:
        from reverie.memory.layout import DEFAULT_BUDGET_FRAMES as frames
    budget = args.budget_bytes or frames * model.spec.kv_bytes_per_frame or None  # None: a model with no cache
    try:
        config = ServerConfig(endpoint=args.endpoint, curve_secret=args.keys, allow_clients=args.allow_clients,
                              **server_fields(args, budget))
    except ValueError as exc:  # e.g. a total budget that is not positive
        print(f"reverie serve: {exc}", file=sys.stderr)
        return 2
    seed_frame = seed_frame_source(model, args.seed_frame, args.map)
    try:
        seed_frame(tuple(model.spec.frame_shape))  # fail early and clearly, not at the first hello
    except Exception as exc:
        print(f"reverie serve: no default seed frame ({exc}); clients must send one in their hello "
              f"(or pass --seed-frame)", file=sys.stderr)
    from reverie.engine.curve import CurveError

    try:
        server = Server(model, config, seed_frame=seed_frame, scene_frame=places(model, args.map, prewarm=True))
    except CurveError as exc:  # an unreadable key file or client-key folder
        print(f"reverie serve: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        price = f"{server.price(config.policy, budget).total:,} bytes each"
    except Exception as exc:  # the default policy cannot be built: every hello must name another
        price = f"the default policy cannot be reserved: {exc}"
    secured = " (CURVE)" if config.curve_secret else ""
    print(f"reverie serve: {model.spec.name} {list(model.spec.frame_shape)} on {server.endpoint}{secured}, "
          f"policy {config.policy}, {budget} KV bytes per session; sessions ({price}) may hold "
          f"{server.total.bytes:,} bytes together ({server.total.source})", file=sys.stderr, flush=True)
    # Everything built so far (the model, torch's and the libraries' objects) lives as long as the process:
    # move it out of the collector's reach, so a full collection between frames walks only what sessions
    # and messages made since (under `reverie bench flood` a full collection took 138 ms, one frame gap)
    gc.collect()
    gc.freeze()
    server.serve_forever()
    print("reverie serve: stopped; recordings closed", file=sys.stderr)
    return 0
