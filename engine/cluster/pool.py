"""Replicas placed by Ray: start them, watch them, scale them.

`ReplicaPool` starts `replicas` Ray actors (`replica.Replica`), each asking Ray for `cpus` CPUs (and `gpus`
GPUs), spread over the cluster's nodes. A watcher thread asks each replica for its `load()` every
`poll_s`; one that does not answer within `dead_after_s` (its actor or node died) is marked dead and
reported to `on_dead`. `scale(n)` adds replicas, or drains the newest ones (no new sessions; stopped once
empty).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from reverie.engine.cluster.replica import Replica

log = logging.getLogger("reverie.cluster")


@dataclass(eq=False)
class ReplicaHandle:
    name: str
    actor: object
    info: dict
    load: dict = field(default_factory=dict)
    alive: bool = True
    draining: bool = False
    last_answer: float = field(default_factory=time.monotonic)


class ReplicaPool:
    def __init__(self, model: str, model_kwargs: dict, config: dict, *, replicas: int = 1, cpus: float = 1.0,
                 gpus: float = 0.0, threads: int | None = None, budget_frames: int | None = None,
                 poll_s: float = 0.25, dead_after_s: float = 1.5, start_timeout_s: float = 300.0,
                 on_dead: Callable[[ReplicaHandle], None] | None = None) -> None:
        import ray

        self._ray = ray
        self._actor = ray.remote(Replica)
        self.model, self.model_kwargs, self.config = model, model_kwargs, config
        self.cpus, self.gpus, self.threads, self.budget_frames = cpus, gpus, threads, budget_frames
        self.poll_s, self.dead_after_s, self.start_timeout_s = poll_s, dead_after_s, start_timeout_s
        self.on_dead = on_dead
        self.gateway_ip = ray.util.get_node_ip_address()
        self.replicas: dict[str, ReplicaHandle] = {}
        self._names = (f"replica-{i}" for i in itertools.count())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.scale(replicas)
        self._watcher = threading.Thread(target=self._watch, name="reverie-replica-watch", daemon=True)
        self._watcher.start()

    # --- lifecycle -----------------------------------------------------------------------------------
    def _start(self, count: int) -> list[ReplicaHandle]:
        ray = self._ray
        names = [next(self._names) for _ in range(count)]
        share = self._host_share()
        actors = [self._actor.options(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0,
                                      scheduling_strategy="SPREAD").remote(
                      name, self.model, self.model_kwargs, self.config, self.gateway_ip, self.threads,
                      self.budget_frames, share)
                  for name in names]
        infos = ray.get([a.info.remote() for a in actors], timeout=self.start_timeout_s)
        handles = [ReplicaHandle(n, a, i) for n, a, i in zip(names, actors, infos)]
        for h, load in zip(handles, ray.get([h.actor.load.remote() for h in handles], timeout=30)):
            h.load = load
        log.info("started %s", ", ".join(f"{h.name} on {h.info['node_ip']} at {h.info['endpoint']}" for h in handles))
        return handles

    def _host_share(self) -> float:
        """What part of a node's memory one replica counts on: its CPUs over the node's (the smallest node's,
        to be safe). A GPU replica counts on its own device's memory, so all of it."""
        if self.gpus:
            return 1.0
        cpus = [n["Resources"].get("CPU", 0) for n in self._ray.nodes() if n.get("Alive")]
        return min(1.0, self.cpus / max(1.0, min(c for c in cpus if c) if any(cpus) else 1.0))

    def scale(self, n: int) -> None:
        """Run `n` replicas: start the missing ones, or drain the newest surplus (stopped once empty)."""
        if n < 1:
            raise ValueError("a cluster needs at least one replica")
        with self._lock:
            serving = [h for h in self.replicas.values() if h.alive and not h.draining]
        if n > len(serving):
            for h in self._start(n - len(serving)):
                with self._lock:
                    self.replicas[h.name] = h
        for h in serving[n:][::-1] if n < len(serving) else ():
            h.draining = True
            log.info("draining %s (%d sessions)", h.name, h.load.get("sessions", 0))

    def serving(self) -> list[ReplicaHandle]:
        """Replicas that take new sessions."""
        with self._lock:
            return [h for h in self.replicas.values() if h.alive and not h.draining]

    def _watch(self) -> None:
        ray = self._ray
        while not self._stop.wait(self.poll_s):
            with self._lock:
                handles = [h for h in self.replicas.values() if h.alive]
            refs = {h.actor.load.remote(): h for h in handles}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=self.poll_s) if refs else ([], [])
            now = time.monotonic()
            for ref in ready:
                h = refs[ref]
                try:
                    h.load, h.last_answer = ray.get(ref), now
                except Exception as exc:  # RayActorError: the actor or its node is gone
                    log.warning("%s failed: %s", h.name, exc)
                    h.last_answer = 0.0
            for h in handles:
                if h.alive and (now - h.last_answer > self.dead_after_s or not h.load.get("alive", True)):
                    h.alive = False
                    log.warning("%s is dead (no answer for %.1f s)", h.name, now - h.last_answer)
                    if self.on_dead is not None:
                        self.on_dead(h)
                elif h.draining and h.load.get("sessions", 1) == 0:
                    self._retire(h)

    def _retire(self, h: ReplicaHandle) -> None:
        with self._lock:
            self.replicas.pop(h.name, None)
        h.alive = False
        try:
            self._ray.get(h.actor.stop.remote(), timeout=15)
        except Exception:
            pass
        self._ray.kill(h.actor)
        log.info("%s drained and stopped", h.name)

    def shutdown(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=5)
        with self._lock:
            handles = list(self.replicas.values())
            self.replicas.clear()
        for h in handles:
            try:
                self._ray.get(h.actor.stop.remote(), timeout=10)
            except Exception:
                pass
            self._ray.kill(h.actor)
