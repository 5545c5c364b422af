"""`reverie bench play`: end to end, a server process and a bot client process over TCP loopback.

The bench starts `reverie serve` as a child process and plays from this process with the headless bot
(one action per frame, `--credits` frames in flight), twice: without recording, then recording every
frame to disk. The two sessions are open together and take turns in blocks of `--block` frames, so
a machine whose load drifts during the bench affects both alike. After `--warmup` frames it measures:

    fps             frames received per second
    latency_p50/95  action sent (keys polled) -> frame received, milliseconds, per displayed frame: with a
                    chunk of several frames, the step that starts a chunk waits for all of it and the
                    others are handed out at once (`frames_per_chunk` in the JSON)
    fps_recording   fps of the second run, the server writing the rollout as it plays

The recording is read back to check it is whole. Human table first; with `--json` the last line is
`{"fps", "latency_p50_ms", "latency_p95_ms", "fps_recording", "frames", ...}`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from reverie.engine.bench.report import finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=600, help="measured frames per run (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="frames played before measuring (default: %(default)s)")
    parser.add_argument("--model", default="default", help="world model name (default: %(default)s)")
    parser.add_argument("--model-kwargs", default="{}", metavar="JSON",
                        help='factory arguments, e.g. \'{"pretrained": false, "config": "tiny"}\'')
    parser.add_argument("--tiny", action="store_true",
                        help='shortcut for --model default --model-kwargs \'{"pretrained": false, "config": "tiny"}\'')
    parser.add_argument("--policy", default="dual", help="memory policy (default: dual, the default of `reverie play`)")
    parser.add_argument("--budget-frames", type=int, default=32, help="per-session KV budget (default: %(default)s)")
    parser.add_argument("--credits", type=int, default=1, choices=(1, 2))
    parser.add_argument("--threads", type=int, default=None, help="server torch threads (default: cores - 1)")
    parser.add_argument("--block", type=int, default=50, help="frames per turn of each run (default: %(default)s)")
    parser.add_argument("--actions", default=None, help="JSON action file for the bot (default: a patrol script)")
    parser.add_argument("--cluster", type=int, default=0, metavar="REPLICAS",
                        help="serve through the cluster gateway with this many replicas on a local Ray (needs ray)")


def run(args: argparse.Namespace) -> int:
    from reverie.engine.commands.play import bench_server, start_server, stop_server
    from reverie.engine.rollout import read_rollout
    from reverie.input.bot import load_actions

    model, kwargs, endpoint = bench_server(args)
    actions = load_actions(args.actions)
    with tempfile.TemporaryDirectory(prefix="reverie-bench-play-") as tmp:
        extra = ["--record-dir", tmp, "--policy", args.policy, "--policies", args.policy,
                 "--budget-frames", str(args.budget_frames), "--ttl", "600"]
        if args.threads:
            extra += ["--threads", str(args.threads)]
        if args.cluster:
            extra += ["--cluster", "--replicas", str(args.cluster)]
        t0 = time.monotonic()
        proc, code = start_server(model, kwargs, endpoint, extra)
        if code is not None:
            print(f"reverie bench play: the server for model '{model}' did not start (exit code {code})")
            return 2
        startup_s = time.monotonic() - t0
        try:
            runs = _alternate(endpoint, args, actions)
            welcome = runs.pop("welcome")
        finally:
            stop_server(proc)
        recordings = sorted(p for p in __import__("pathlib").Path(tmp).iterdir() if p.is_dir())
        rollout = read_rollout(recordings[-1]) if recordings else None
        recorded_steps = len(rollout) if rollout is not None else 0
        recording_complete = bool(rollout is not None and rollout.complete)
    plain, rec = runs["plain"], runs["recording"]
    result = {"fps": round(plain["fps"], 2), "latency_p50_ms": round(plain["latency_p50_ms"], 1),
              "latency_p95_ms": round(plain["latency_p95_ms"], 1), "fps_recording": round(rec["fps"], 2),
              "frames": plain["frames"], "recording_latency_p95_ms": round(rec["latency_p95_ms"], 1),
              "recorded_steps": recorded_steps, "recording_complete": recording_complete,
              "model": welcome.model, "model_kwargs": json.loads(kwargs), "resolution": list(welcome.frame_shape),
              "policy": welcome.policy, "budget_bytes": welcome.budget_bytes, "credits": args.credits,
              "warmup": args.warmup, "server_startup_s": round(startup_s, 2),
              "frames_per_chunk": welcome.chunk_frames * welcome.frames_per_latent,
              "real_time_fps": round(welcome.step_hz, 2), "cluster_replicas": args.cluster}
    print(f"{'run':<12}{'frames':>8}{'fps':>8}{'p50 ms':>9}{'p95 ms':>9}")
    for name, r in runs.items():
        print(f"{name:<12}{r['frames']:>8}{r['fps']:>8.1f}{r['latency_p50_ms']:>9.1f}{r['latency_p95_ms']:>9.1f}")
    print(f"model {welcome.model} {welcome.frame_shape} {json.loads(kwargs) or ''}, policy {welcome.policy}, "
          f"{recorded_steps} steps recorded ({'complete' if recording_complete else 'INCOMPLETE'}), "
          f"recording/plain fps {rec['fps'] / max(plain['fps'], 1e-9):.2f}")
    return finish(result, args.json)


def _alternate(endpoint: str, args, actions) -> dict:
    """Both runs, interleaved in blocks; returns {"plain": stats, "recording": stats, "welcome": ...}."""
    from reverie.input.bot import run_bot
    from reverie.input.net import Connection, Percentiles

    conns = {"plain": Connection(endpoint, credits=args.credits, record=False, client="reverie-bench"),
             "recording": Connection(endpoint, credits=args.credits, record=True, client="reverie-bench")}
    totals = {name: {"frames": 0, "seconds": 0.0} for name in conns}
    try:
        for conn in conns.values():
            run_bot(conn, 0, actions, warmup=args.warmup, timeout_s=60 + args.warmup * 5.0)
            conn.latency = Percentiles(n=args.frames + 1)
        while min(t["frames"] for t in totals.values()) < args.frames:
            for name, conn in conns.items():
                n = min(args.block, args.frames - totals[name]["frames"])
                if n <= 0:
                    continue
                r = run_bot(conn, n, actions, timeout_s=60 + n * 5.0)
                totals[name]["frames"] += r["frames"]
                totals[name]["seconds"] += r["frames"] / r["fps"] if r["fps"] else 0.0
        out = {name: {"frames": t["frames"], "fps": t["frames"] / t["seconds"] if t["seconds"] else 0.0,
                      "latency_p50_ms": conns[name].latency.p(50), "latency_p95_ms": conns[name].latency.p(95)}
               for name, t in totals.items()}
        out["welcome"] = conns["plain"].welcome
        return out
    finally:
        for conn in conns.values():
            conn.close()
