"""Changing a running cluster from outside: a named Ray actor the gateway's pool listens to.

`reverie serve --cluster` starts `ClusterControl` under the name `CONTROL_NAME` in the `reverie` namespace;
`reverie cluster scale N` (any machine of the cluster, `--address`) sets how many replicas should serve,
and `reverie cluster status` reads what the gateway last reported (replicas, sessions, bytes). The pool
applies a new count within about a second: more replicas are started; fewer drain (the newest first: no new
sessions, stopped once their sessions end).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("reverie.cluster")
CONTROL_NAME = "reverie-cluster-control"
NAMESPACE = "reverie"


class ClusterControl:
    """The body of the named actor: a wanted replica count and the gateway's last report."""

    def __init__(self, replicas: int) -> None:
        self.replicas = int(replicas)
        self.report: dict = {}

    def scale(self, replicas: int) -> int:
        if int(replicas) < 1:
            raise ValueError("a cluster needs at least one replica")
        self.replicas = int(replicas)
        return self.replicas

    def wanted(self) -> int:
        return self.replicas

    def set_report(self, report: dict) -> None:
        self.report = report

    def status(self) -> dict:
        return {"wanted_replicas": self.replicas, **self.report}


def start_control(replicas: int):
    """The named control actor for this cluster (replacing one a previous gateway left)."""
    import ray

    try:
        ray.kill(ray.get_actor(CONTROL_NAME, namespace=NAMESPACE))
    except ValueError:
        pass
    return ray.remote(ClusterControl).options(name=CONTROL_NAME, namespace=NAMESPACE, num_cpus=0).remote(replicas)


def get_control():
    """The running cluster's control actor; `ValueError` when no `reverie serve --cluster` runs there."""
    import ray

    try:
        return ray.get_actor(CONTROL_NAME, namespace=NAMESPACE)
    except ValueError:
        raise ValueError("no `reverie serve --cluster` runs on this Ray cluster") from None


class ControlLoop:
    """Applies the wanted count to `pool` and reports `report()` back, every `every_s`, on a thread."""

    def __init__(self, control, pool, report, every_s: float = 0.5) -> None:
        self.control, self.pool, self.report, self.every_s = control, pool, report, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reverie-cluster-control", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import ray

        while not self._stop.wait(self.every_s):
            try:
                wanted = ray.get(self.control.wanted.remote(), timeout=5)
                if wanted != len(self.pool.serving()):
                    self.pool.scale(wanted)
                self.control.set_report.remote(self.report())
            except Exception as exc:  # the control actor gone, a replica that did not start: say so, go on
                log.warning("cluster control: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
