"""The gateway on a simulated two-node Ray cluster (`ray.cluster_utils.Cluster`): one replica per node,
sessions spread over the nodes, and a node removed mid-stream: its session is told within 2 s and resumes
on the other node, whose player is not disturbed. Skipped without Ray."""

import os
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from reverie.engine.cluster.pool import ReplicaPool  # noqa: E402
from reverie.input.bot import run_bot  # noqa: E402
from reverie.input.net import Connection  # noqa: E402
from test_cluster import GatewayThread, fields, replica_of  # noqa: E402

HERE = str(Path(__file__).parent)


@pytest.fixture(scope="module")
def two_nodes():
    path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH", "")) if p)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
             log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def test_replicas_spread_over_nodes_and_a_lost_nodes_session_resumes_on_the_other(two_nodes, tmp_path):
    cluster, worker = two_nodes
    pool = ReplicaPool("tinyworld:build", {}, fields(tmp_path, 2.5), replicas=2, cpus=1, threads=1,
                       dead_after_s=1.0)
    try:
        actor_nodes = {h.name: h.info["node_id"] for h in pool.replicas.values()}
        assert len(set(actor_nodes.values())) == 2, actor_nodes          # one replica per node
        with GatewayThread(pool) as gw:
            conns = [Connection(gw.endpoint, timeout_s=60) for _ in range(2)]
            for c in conns:
                assert run_bot(c, 3, [1])["frames"] == 3
            placed = {replica_of(c, gw): c for c in conns}
            assert set(placed) == set(actor_nodes)                            # spread: one session per replica
            on_worker = next(n for n, node in actor_nodes.items() if node == worker.node_id)
            lost, kept = placed[on_worker], next(c for n, c in placed.items() if n != on_worker)
            t0 = time.monotonic()
            cluster.remove_node(worker)
            while not any(e.code == "failover" for e in lost.errors) and time.monotonic() - t0 < 5:
                lost.poll(50)
            assert time.monotonic() - t0 < 2.0 and lost.closed_reason is None
            assert run_bot(kept, 5, [3])["frames"] == 5
            assert run_bot(lost, 5, [1], timeout_s=30)["frames"] == 5       # it plays on, on the head node
            assert replica_of(lost, gw) != on_worker
            for c in conns:
                c.close()
    finally:
        pool.shutdown()


def test_bench_cluster_runs_a_short_failover(capsys):
    """`reverie bench cluster` (its own simulated cluster, so after the fixture's is gone): a short run."""
    import json

    from reverie.engine.cli import main

    if ray.is_initialized():
        ray.shutdown()
    assert main(["bench", "cluster", "--sessions", "2", "--seconds", "6", "--warmup-s", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["served"] == 2 and result["lost"] == 0 and result["refused"] == 1
    assert all(0 <= t < 2.0 for t in result["failover_resume_s"])
    assert result["latency_p50_ms"] > 0 and result["direct_latency_p50_ms"] > 0


def test_reverie_serve_cluster_from_the_command_line(capsys):
    """`reverie serve --cluster --replicas 1` in its own process (its own local Ray), played by the bench's bot."""
    import json

    from reverie.engine.cli import main

    assert main(["bench", "play", "--tiny", "--cluster", "1", "--frames", "20", "--warmup", "5", "--block", "10",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["cluster_replicas"] == 1 and result["frames"] == 20 and result["recording_complete"]
