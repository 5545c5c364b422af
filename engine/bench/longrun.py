"""`reverie bench longrun`: memory and speed stay flat over thousands of frames.

Runs one session of `--frames` frames (seeded random held actions, noise from seed/chunk/step) under a
policy (default: the default policy, `dual`) at `--budget-frac` of the full cache at `--horizon` frames,
and reports:

* `kv_bytes_after_fill` / `kv_bytes_last`: cache bytes when the cache first reaches its final size, and
  at the end (equal for a budgeted policy);
* `ms_ratio_last_first`: median wall ms per frame over the last `--window` frames divided by the median
  over the first `--window` frames after the fill (medians: the machine is shared and noisy);
  `cpu_ms_ratio_last_first` is the same with this process's CPU time, which other processes on a busy
  machine disturb less (meaningful on the CPU with one thread);
* `rss_growth`: process RSS at the end over RSS right after the fill, minus 1;
* `max_position_seen` vs `max_position` (the policy's bound; null = absolute positions): temporal
  positions never leave the bounded range.
"""

from __future__ import annotations

import argparse
import json
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from engine.bench.memory import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--frames", type=int, default=5000, help="frames to generate (default 5000)")
    parser.add_argument("--policy", default="dual", help="memory policy (default: dual)")
    parser.add_argument("--budget-frac", type=float, default=0.25, help="fraction of the full cache at --horizon")
    parser.add_argument("--horizon", type=int, default=256, help="frames the budget fraction refers to")
    parser.add_argument("--window", type=int, default=500, help="frames in the first/last timing windows")


class PositionProbe:
    """Passes everything through to the memory and records the largest temporal position it shows."""

    def __init__(self, memory) -> None:
        self.memory, self.max_seen = memory, 0

    def view(self, layer, q, k, v):
        view = self.memory.view(layer, q, k, v)
        if layer == 0:
            top = max(int(s.pos.max()) for s in view.segments if s.pos.numel())
            self.max_seen = max(self.max_seen, top, int(view.q_pos.max()))
        return view

    def __getattr__(self, name):
        return getattr(self.memory, name)


def run(args: argparse.Namespace) -> int:
    import psutil
    import torch

    from engine.bench.memory import load_world_model, random_episode
    from engine.sampler import FrameContext, commit_frames, generate_chunk
    from memory import MemoryManager
    from world.pose import advance_pose

    model = load_world_model(args)
    spec, dev = model.spec, args.device or model.device
    mem = MemoryManager.create(spec, policy=args.policy, budget_frac=args.budget_frac, horizon_frames=args.horizon,
                               device=dev)
    probe = PositionProbe(mem)
    ctx = FrameContext(spec)
    episode = random_episode(spec, args.seed, args.frames + spec.chunk_frames)
    proc = psutil.Process()
    k = spec.chunk_frames
    ms, cpu, kv, rss = [], [], [], []
    pose = (0.0, 0.0, 0.0)
    with torch.inference_mode():
        seed = model.encode(torch.full((1, *spec.frame_shape), 128, dtype=torch.uint8, device=dev))
        mem.begin_chunk(pose=pose)
        commit_frames(model, probe, seed.expand(k, *seed.shape[1:]).contiguous(),
                      torch.zeros(k, dtype=torch.long, device=dev), ctx)
        mem.end_chunk()
        for chunk in range(args.frames // k):
            acts = torch.tensor(episode.actions[1 + chunk * k: 1 + (chunk + 1) * k], device=dev)
            t0, c0 = time.perf_counter(), time.process_time()
            mem.begin_chunk(pose=pose)
            x0, delta = generate_chunk(model, probe, acts, seed=args.seed, chunk_index=chunk, context=ctx)
            mem.end_chunk()
            model.decode(x0).cpu()
            ms.append(1000.0 * (time.perf_counter() - t0) / k)
            cpu.append(1000.0 * (time.process_time() - c0) / k)
            kv.append(mem.kv_bytes())
            rss.append(proc.memory_info().rss)
            if delta is not None:
                for fwd, left, da in delta.double().cpu().tolist():
                    pose = advance_pose(pose, fwd, left, da)
    result = summarize(ms, kv, rss, k, args.window)
    cpu_first = cpu[result["fill_frame"] // k - 1:][: len(cpu)]
    w = result["window_chunks"]
    result["cpu_ms_ratio_last_first"] = _median(cpu[-w:]) / max(_median(cpu_first[:w]), 1e-9)
    result.update({"frames": len(ms) * k, "policy": args.policy, "model": args.model,
                   "budget_bytes": mem.layout.budget_bytes, "max_position_seen": probe.max_seen,
                   "max_position": mem.max_position, "archive_bytes": mem.stats()["archive_bytes"]})
    print(f"longrun: {result['frames']} frames, policy {args.policy}, model {args.model}")
    for key in ("kv_bytes_after_fill", "kv_bytes_last", "fill_frame", "ms_first", "ms_last", "ms_ratio_last_first",
                "cpu_ms_ratio_last_first", "rss_growth", "max_position_seen", "max_position"):
        print(f"  {key:>20}: {result[key]}")
    if args.json:
        print(json.dumps(result))
    return 0


def _median(xs: list[float]) -> float:
    import statistics

    return statistics.median(xs)


def summarize(ms: list[float], kv: list[int], rss: list[int], chunk_frames: int, window: int) -> dict:
    """Flatness figures from per-chunk ms/frame, kv bytes and RSS (see the module docstring)."""
    import statistics

    final = kv[-1]
    fill = next(i for i, b in enumerate(kv) if b == final)
    w = max(1, min(window // chunk_frames, (len(ms) - fill) // 2))
    first, last = ms[fill:fill + w], ms[-w:]
    return {"kv_bytes_after_fill": kv[fill], "kv_bytes_last": final, "fill_frame": (fill + 1) * chunk_frames,
            "ms_first": statistics.median(first), "ms_last": statistics.median(last),
            "ms_ratio_last_first": statistics.median(last) / statistics.median(first),
            "rss_growth": rss[-1] / rss[fill] - 1.0, "kv_max": max(kv), "window_chunks": w}
