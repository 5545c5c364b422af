"""One model replica: a `Server` on its own ZeroMQ endpoint, run on a thread inside a Ray actor.

The replica binds loopback when it shares the gateway's node; on another node it binds the node's address
with CURVE keys it makes itself, whose public half reaches the gateway through Ray (so only the gateway
can talk to it). Its `Server` does the admission of the sessions it holds (the same two-phase admission as
a single server); `load()` reports what it holds for the gateway's choice of replica.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import asdict


class Replica:
    """The body of the Ray actor (`pool.ReplicaPool` wraps it with `ray.remote`).

    Args:
        name: the replica's name (in stats and logs).
        model, model_kwargs: what `engine.commands.serve.load_world` loads.
        config: `ServerConfig` fields (policy, budgets, max sessions, ttl ...); the endpoint is the replica's.
        gateway_ip: the gateway's node address: the same node binds loopback, another binds with CURVE.
        threads: torch threads for this replica.
        budget_frames: the per-session budget in frames of this model, when `config` names no bytes.
        host_share: the part of its node's memory this replica may count on when `config` names no total
            (replicas sharing a node must not each claim the same free memory).
    """

    def __init__(self, name: str, model: str, model_kwargs: dict, config: dict, gateway_ip: str,
                 threads: int | None = None, budget_frames: int | None = None, host_share: float = 1.0) -> None:
        import torch

        from reverie.engine.commands.serve import load_world, places, seed_frame_source
        from reverie.engine.curve import make_keys
        from reverie.engine.server import Server, ServerConfig

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self.node_ip, self.node_id = _node_ip(), _node_id()
        if config.get("total_budget_bytes") is None and host_share < 1.0:
            from reverie.engine.capacity import DEFAULT_TOTAL_FRACTION

            frac = config.get("total_budget_frac", DEFAULT_TOTAL_FRACTION) * host_share
            config = {**config, "total_budget_frac": frac}
        world = load_world(model, model_kwargs)
        if config.get("budget_bytes") is None and budget_frames:  # the per-session budget, in the model's frames
            config = {**config, "budget_bytes": budget_frames * world.spec.kv_bytes_per_frame or None}
        self.public_key = None
        extra = {}
        if self.node_ip == gateway_ip:
            endpoint = "tcp://127.0.0.1:0"
        else:  # reachable from the network: CURVE, with a key pair only this replica and the gateway know
            self._keys = tempfile.TemporaryDirectory(prefix="reverie-replica-")
            public, secret = make_keys(self._keys.name, "replica")
            self.public_key = public.read_text()
            endpoint, extra = f"tcp://{self.node_ip}:0", {"curve_secret": str(secret)}
        self.server = Server(world, ServerConfig(**{**config, **extra, "endpoint": endpoint}),
                             seed_frame=seed_frame_source(world, None, None), scene_frame=places(world, None))
        self.spec = world.spec
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"reverie-{name}", daemon=True)
        self._thread.start()

    def info(self) -> dict:
        """Where and what: endpoint, node, the CURVE public key (None on loopback), the model's spec, and
        the server's settings the gateway prices sessions with."""
        cfg = self.server.config
        return {"name": self.name, "endpoint": self.server.endpoint, "node_ip": self.node_ip,
                "node_id": self.node_id, "public_key": self.public_key, "spec": self.spec, "policy": cfg.policy,
                "budget_bytes": cfg.budget_bytes, "recache_chunks": cfg.recache_chunks,
                "latent_dtype": self.server._latent_dtype, "device": str(self.server.model.device),
                "config": {k: v for k, v in asdict(cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}}

    def load(self) -> dict:
        """What it holds now: sessions, reserved bytes, its total and session limit, whether it runs."""
        s = self.server
        return {"name": self.name, "sessions": len(s.clients), "reserved_bytes": s.admission.reserved_bytes,
                "total_bytes": s.total.bytes, "max_sessions": s.config.max_sessions,
                "alive": self._thread.is_alive()}

    def stop(self) -> None:
        self.server.stop()
        self._thread.join(timeout=10)


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray (tests of the body alone)
        return "127.0.0.1"
