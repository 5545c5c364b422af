"""`reverie bench longrun`: memory and speed stay flat over thousands of frames.

Runs one session of `--frames` frames (seeded random held actions, noise from seed/chunk/step) under a
policy (default: the default policy, `dual`) at `--budget-frac` of the full cache at `--horizon` frames,
and reports:

* `kv_bytes_after_fill` / `kv_bytes_last`: cache bytes when the cache first reaches its final size, and
  at the end (equal for a budgeted policy). Frames waiting for a demotion batch (`PolicyConfig.
  demote_every`) come and go every few frames, so these leave them out; `kv_max`, the most the cache held
  at any chunk's end, counts them;
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

The session is an `engine.session.Session` (seed frame grey) whose memory is wrapped in a `PositionProbe`;
each chunk is `Session.generate` with the episode's per-frame actions, and the frozen copy is
`Session.fork()`.
"""

from __future__ import annotations

import argparse
import time

from reverie.engine.bench.report import finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.bench.memory import add_run_arguments

    add_run_arguments(parser)
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
        if name == "memory":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.memory, name)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import psutil

    from reverie.engine.bench.episodes import random_episode
    from reverie.engine.bench.memory import load_world_model
    from reverie.engine.session import Session
    from reverie.memory import MemoryManager

    model = load_world_model(args)
    spec, dev = model.spec, args.device or model.device

    def probed_memory(spec, policy, budget_bytes):
        return PositionProbe(MemoryManager.create(spec, policy=policy, budget_frac=args.budget_frac,
                                                  horizon_frames=args.horizon, device=dev))

    session = Session(model, np.full(spec.frame_shape, 128, np.uint8), policy=args.policy, seed=args.seed,
                      memory_factory=probed_memory)
    probe = session.memory
    mem = probe.memory
    episode = random_episode(spec, args.seed, args.frames + spec.chunk_frames)
    proc = psutil.Process()
    k = spec.chunk_frames
    ms, cpu, kv, rss = [], [], [], []
    chunks = args.frames // k
    w = max(1, args.window // k)
    frozen, paired_from, pairs_first, pairs_last, rss_frozen = None, None, [], [], None
    kv_max = 0
    for chunk in range(chunks):
        acts = episode.actions[1 + chunk * k: 1 + (chunk + 1) * k]
        pairs = None
        if frozen is not None and (chunk < paired_from + w or chunk >= chunks - w):
            pairs = pairs_first if chunk < paired_from + w else pairs_last
        control, state = None, (session.chunk_index, session.pose)  # the control repeats this chunk
        if pairs is not None and chunk % 2:  # alternate which of the two runs first
            control = _timed_control(frozen, state, acts)
        t0, c0 = time.perf_counter(), time.process_time()
        session.generate(acts)
        ms.append(1000.0 * (time.perf_counter() - t0) / k)
        cpu.append(1000.0 * (time.process_time() - c0) / k)
        if pairs is not None:
            if control is None:
                control = _timed_control(frozen, state, acts)
            pairs.append(ms[-1] / control)
            _release_freed_heap()  # the copies' freed pages are not the session's memory
        held = mem.region_bytes()
        kv.append(sum(held.values()) - held.get("pending", 0))
        kv_max = max(kv_max, sum(held.values()))
        rss.append(proc.memory_info().rss)
        if args.paired and frozen is None and len(kv) > 1 and kv[-1] == kv[-2] and chunk + 2 * w <= chunks:
            frozen, paired_from = session.fork(), chunk + 1  # the cache stopped growing: its fill state
            rss_frozen = proc.memory_info().rss
    result = summarize(ms, kv, rss, k, args.window)
    result["kv_max"] = kv_max
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
    return finish(result, args.json)


def _release_freed_heap() -> None:
    """Hand freed heap pages back to the OS (glibc `malloc_trim`; a no-op elsewhere), so the frozen-state
    copies the paired timing makes and drops do not linger in the process RSS."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _timed_control(frozen, state, acts) -> float:
    """Wall ms per frame of a live chunk (its actions, and `state`: its noise index and pose) generated from
    a fresh copy of the frozen fill state (the copy not timed)."""
    control = frozen.fork()
    control.chunk_index, control.pose = state
    t0 = time.perf_counter()
    control.generate(acts)
    return 1000.0 * (time.perf_counter() - t0) / len(acts)


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
