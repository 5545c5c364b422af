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
* `ms_ratio_paired`: the same question with the machine's drift taken out. A copy of the session is
  frozen when the cache fills; during both timing windows every live chunk is timed back to back with
  the same chunk generated from a fresh copy of that frozen state (order alternating). The figure is
  median(live / frozen) over the last window divided by the same over the first window: how much slower
  a frame is after `--frames` frames than right after the fill, under identical machine conditions. On a
  shared machine whose speed wanders by 10-20 % over minutes, the chronological ratio cannot resolve a
  10 % change; this one can (`--no-paired` skips the copies);
* `rss_growth`: process RSS at the end over RSS right after the fill, minus 1 (with the paired control,
  right after the frozen copy is made, so the bench's own copy is not counted as growth);
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
    parser.add_argument("--no-paired", dest="paired", action="store_false",
                        help="skip the frozen-state control chunks (no ms_ratio_paired)")


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
    from engine.sampler import FrameContext, commit_frames
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
    chunks = args.frames // k
    w = max(1, args.window // k)
    frozen, paired_from, pairs_first, pairs_last, rss_frozen = None, None, [], [], None
    with torch.inference_mode():
        seed = model.encode(torch.full((1, *spec.frame_shape), 128, dtype=torch.uint8, device=dev))
        mem.begin_chunk(pose=pose)
        commit_frames(model, probe, seed.expand(k, *seed.shape[1:]).contiguous(),
                      torch.zeros(k, dtype=torch.long, device=dev), ctx)
        mem.end_chunk()
        for chunk in range(chunks):
            acts = torch.tensor(episode.actions[1 + chunk * k: 1 + (chunk + 1) * k], device=dev)
            pairs = None
            if frozen is not None and (chunk < paired_from + w or chunk >= chunks - w):
                pairs = pairs_first if chunk < paired_from + w else pairs_last
            control = None
            if pairs is not None and chunk % 2:  # alternate which of the two runs first
                control = _timed_control(model, frozen, acts, args.seed, chunk, pose)
            t0, c0 = time.perf_counter(), time.process_time()
            delta = _run_chunk(model, mem, probe, ctx, acts, args.seed, chunk, pose)
            ms.append(1000.0 * (time.perf_counter() - t0) / k)
            cpu.append(1000.0 * (time.process_time() - c0) / k)
            if pairs is not None:
                if control is None:
                    control = _timed_control(model, frozen, acts, args.seed, chunk, pose)
                pairs.append(ms[-1] / control)
                _release_freed_heap()  # the copies' freed pages are not the session's memory
            kv.append(mem.kv_bytes())
            rss.append(proc.memory_info().rss)
            if delta is not None:
                for fwd, left, da in delta.double().cpu().tolist():
                    pose = advance_pose(pose, fwd, left, da)
            if args.paired and frozen is None and len(kv) > 1 and kv[-1] == kv[-2] and chunk + 2 * w <= chunks:
                frozen, paired_from = _copy_state(mem, ctx), chunk + 1  # the cache stopped growing: its fill state
                rss_frozen = proc.memory_info().rss
    result = summarize(ms, kv, rss, k, args.window)
    cpu_first = cpu[result["fill_frame"] // k - 1:][: len(cpu)]
    w = result["window_chunks"]
    result["cpu_ms_ratio_last_first"] = _median(cpu[-w:]) / max(_median(cpu_first[:w]), 1e-9)
    result["ms_ratio_paired"] = (_median(pairs_last) / _median(pairs_first)) if pairs_first and pairs_last else None
    result["paired_from_frame"] = None if paired_from is None else paired_from * k
    if rss_frozen is not None:  # the frozen copy is the bench's, not the session's: growth counts from after it
        result["rss_growth"] = rss[-1] / rss_frozen - 1.0
    result.update({"frames": len(ms) * k, "policy": args.policy, "model": args.model,
                   "budget_bytes": mem.layout.budget_bytes, "max_position_seen": probe.max_seen,
                   "max_position": mem.max_position, "archive_bytes": mem.stats()["archive_bytes"]})
    print(f"longrun: {result['frames']} frames, policy {args.policy}, model {args.model}")
    for key in ("kv_bytes_after_fill", "kv_bytes_last", "fill_frame", "ms_first", "ms_last", "ms_ratio_last_first",
                "cpu_ms_ratio_last_first", "ms_ratio_paired", "rss_growth", "max_position_seen", "max_position"):
        print(f"  {key:>20}: {result[key]}")
    if args.json:
        print(json.dumps(result))
    return 0


def _copy_state(mem, ctx):
    """A private copy of a session's state (memory and frame context): the frozen fill state, and each
    control chunk's own fresh copy of it (a chunk commits into the memory it runs on)."""
    import copy

    return copy.deepcopy((mem, ctx))


def _release_freed_heap() -> None:
    """Hand freed heap pages back to the OS (glibc `malloc_trim`; a no-op elsewhere), so the frozen-state
    copies the paired timing makes and drops do not linger in the process RSS."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _run_chunk(model, mem, view, ctx, acts, seed: int, chunk: int, pose):
    """Generate and decode one chunk of the session `mem` (attending through `view`: the memory itself or
    a probe around it); returns the pose deltas."""
    from engine.sampler import generate_chunk

    mem.begin_chunk(pose=pose)
    x0, delta = generate_chunk(model, view, acts, seed=seed, chunk_index=chunk, context=ctx)
    mem.end_chunk()
    model.decode(x0).cpu()
    return delta


def _timed_control(model, frozen, acts, seed: int, chunk: int, pose) -> float:
    """Wall ms per frame of the same chunk generated from a fresh copy of the frozen state (copy not timed)."""
    mem, ctx = _copy_state(*frozen)
    t0 = time.perf_counter()
    _run_chunk(model, mem, mem, ctx, acts, seed, chunk, pose)
    return 1000.0 * (time.perf_counter() - t0) / acts.shape[0]


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
