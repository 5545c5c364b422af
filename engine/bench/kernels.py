"""`reverie bench kernels`: attention over memory views and the commit-time ops, per backend.

CPU: times the torch reference path (the CPU play path) at the default model's geometry and a wider one:
float / int8 / int4 views with gathered slots and a per-slot bias at several visible-cache sizes, a dense single-segment view
(plain SDPA after RoPE), and the commit-time ops (quantize, dequantize, participation scores, segment
similarity). CUDA: the Matrix-Game-2.0 geometry (880 tokens per frame, 12 heads x 128, 3-frame chunk
queries, 6 to 21 visible cache frames): fused Triton vs flash-attn (and torch SDPA) dense on the same number
of visible tokens, int8/int4 vs bf16 in time and peak memory, and the commit-time ops per backend.

Columns: `ms` median wall time (CUDA events on GPU; perf_counter after warmup on CPU), `tflops` attention
FLOPs (4 H Nq N D) per second, `gbps` bytes of the inputs read and outputs written (K/V codes, scales,
index, bias, q, out) per second, `peak_mb` the inputs' bytes plus the peak of what the call allocates
(CUDA: `max_memory_allocated`; CPU: the profiler's memory timeline). With `--json` the last line is
`{"device", "rows": [{"op", "backend", "shape", "ms", "tflops", "gbps", "peak_mb"}]}`.
"""

from __future__ import annotations

import argparse
import time

from reverie.engine.bench.report import finish


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to run (auto: CUDA when available)")
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions per row (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing each row")
    parser.add_argument("--quick", action="store_true", help="one small size per op (smoke test)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads on the CPU (default 1: on a busy machine more threads can be "
                             "orders of magnitude slower for these small ops)")


def run(args: argparse.Namespace) -> int:
    import torch

    from reverie.engine.devices import DeviceError, resolve_device

    try:
        device = resolve_device(args.device).type
    except DeviceError as exc:
        raise SystemExit(f"reverie bench kernels: {exc}") from None
    if device == "cpu":
        torch.set_num_threads(max(1, args.threads))
    with torch.inference_mode():
        rows = _gpu_rows(args) if device == "cuda" else _cpu_rows(args)
    name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name(torch.get_num_threads())
    _print_table(name, rows)
    for line in _ratios(rows):
        print(line)
    return finish({"device": name, "rows": rows}, args.json)


# ---------------------------------------------------------------------------------------------- cases


# The default model (world/dit/config.py): 2 heads x 64, 48 tokens per frame, 1-frame chunks; plus a wider
# geometry nearer the top of the CPU play range (8 heads, 128 tokens per frame).
CPU_GEOMETRIES = (
    {"heads": 2, "head_dim": 64, "tokens": 48, "chunk": 1, "frames": (4, 16, 64)},
    {"heads": 8, "head_dim": 64, "tokens": 128, "chunk": 1, "frames": (4, 16)},
)


def _cpu_rows(args) -> list[dict]:
    from reverie.kernels.attend import attend_torch

    rows = []
    for geo in CPU_GEOMETRIES[:1] if args.quick else CPU_GEOMETRIES:
        h, d, t = geo["heads"], geo["head_dim"], geo["tokens"]
        nq = geo["chunk"] * t
        for frames in geo["frames"][:1] if args.quick else geo["frames"]:
            visible = frames * t
            for label, kw in _variants(visible, nq):
                rows.append(_attention_row("attend-" + label, "torch", h, d, nq, visible, kw, attend_torch, "cpu", args))
        rows += _commit_rows(h, d, nq, geo["frames"][-1] * t, "cpu", ("torch",), args)
    return rows


# Matrix-Game 2.0: 12 heads x 128, 880 tokens per frame, 3-frame chunks, 6 to 21 visible cache frames.
MG2 = {"heads": 12, "head_dim": 128, "tokens": 880, "chunk": 3, "frames": (6, 12, 21)}


def _gpu_rows(args, device: str = "cuda", geometry: dict | None = None) -> list[dict]:
    """The CUDA rows. `device`/`geometry` exist so tests can walk this code on a tiny CPU (interpreter) setup."""
    import importlib.util

    import torch

    from reverie.kernels.attend import attend_torch
    from reverie.kernels.fused.attention import attend_triton

    geo = geometry or MG2
    h, d, t, chunk = geo["heads"], geo["head_dim"], geo["tokens"], geo["chunk"]
    have_flash = device == "cuda" and importlib.util.find_spec("flash_attn") is not None
    nq = chunk * t
    rows = []
    for frames in (geo["frames"][:1] if args.quick else geo["frames"]):
        visible = frames * t
        for label, kw in _variants(visible, nq):
            rows.append(_attention_row("attend-" + label, "triton", h, d, nq, visible, kw, attend_triton, device, args))
        rows.append(_dense_baseline_row("torch-sdpa", h, d, nq, visible, device, args))
        if have_flash:
            rows.append(_dense_baseline_row("flash-attn", h, d, nq, visible, device, args))
        rows.append(_attention_row("attend-int8-gather-bias", "torch", h, d, nq, visible,
                                   _view_kw(visible, bits=8), attend_torch, device, args))
    rows += _commit_rows(h, d, nq, geo["frames"][-1] * t, device, ("torch", "triton"), args)
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def _variants(visible: int, nq: int) -> list[tuple[str, dict]]:
    """Same number of visible tokens (`visible` cached + `nq` scratch) in every variant."""
    return [("dense", _view_kw(visible + nq, bits=0, dense=True)), ("float-gather-bias", _view_kw(visible, bits=0)),
            ("int8-gather-bias", _view_kw(visible, bits=8)), ("int4-gather-bias", _view_kw(visible, bits=4))]


GROUP = 32  # channels per quantization group (capped at the head dim)


def _view_kw(visible: int, *, bits: int, dense: bool = False) -> dict:
    """Dense: one segment of exactly `visible` slots. Otherwise a 4/3 larger store gathered to `visible`."""
    if dense:
        return {"cache": visible, "bits": bits, "dense": True}
    return {"cache": visible * 4 // 3, "gather": visible, "bits": bits, "bias": "slot", "group": GROUP}


def _build(h, d, nq, kw, device, dtype):
    from reverie.kernels.testing import random_view
    from reverie.kernels.view import KVView

    kw = dict(kw)
    dense = kw.pop("dense", False)
    if "group" in kw:
        kw["group"] = min(kw["group"], d)
    q, view = random_view(h, d, nq, device=device, dtype=dtype, **kw)
    if dense:  # the cache tier alone: one plain float segment (no scratch, no gather, no bias)
        view = KVView(view.segments[:1], view.q_pos, view.rope)
    return q, view


def _attention_row(op, backend, h, d, nq, visible, kw, fn, device, args) -> dict:
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    base = _allocated(device)
    q, view = _build(h, d, nq, kw, device, dtype)
    n = view.visible
    inputs = _nbytes(q, view)
    ms = _time(lambda: fn(q, view), device, args.repeat, args.warmup)
    peak = _peak_mb(lambda: fn(q, view), device, inputs, base)
    moved = inputs + q.nbytes  # everything read once + the output written
    tier = f"int{kw['bits']}" if kw.get("bits") else str(dtype).removeprefix("torch.")
    shape = f"H{h}xD{d} q{nq} kv{n} {tier}"
    del q, view
    return _row(op, backend, shape, ms, 4 * h * nq * n * d, moved, peak)


def _dense_baseline_row(backend, h, d, nq, visible, device, args) -> dict:
    """Dense attention over pre-rotated bf16 K/V of `visible + nq` tokens: the speed-of-light reference."""
    import torch
    import torch.nn.functional as F

    base = _allocated(device)
    n = visible + nq
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    q, k, v = (torch.randn(h, m, d, device=device, dtype=dtype) for m in (nq, n, n))
    if backend == "flash-attn":
        from flash_attn import flash_attn_func

        qb, kb, vb = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))
        fn = lambda: flash_attn_func(qb, kb, vb)  # noqa: E731
    else:
        fn = lambda: F.scaled_dot_product_attention(q[None], k[None], v[None])  # noqa: E731
    inputs = q.nbytes + k.nbytes + v.nbytes
    ms = _time(fn, device, args.repeat, args.warmup)
    peak = _peak_mb(fn, device, inputs, base)
    return _row("attend-dense", backend, f"H{h}xD{d} q{nq} kv{n} (pre-rotated)", ms, 4 * h * nq * n * d,
                inputs + q.nbytes, peak)


def _commit_rows(h, d, t, cache, device, backends, args) -> list[dict]:
    import torch

    from reverie.kernels import attention_backend
    from reverie.kernels.quant import dequantize, quantize
    from reverie.kernels.scores import participation_scores, segment_similarity

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    k_chunk = torch.randn(h, t, d, device=device, dtype=dtype, generator=gen)
    k_cache = torch.randn(h, cache, d, device=device, dtype=dtype, generator=gen)
    q_recent = torch.randn(h, t, d, device=device, dtype=dtype, generator=gen)
    frames = torch.randn(h, 4, t, d, device=device, dtype=dtype, generator=gen)
    g = min(GROUP, d)
    codes8, codes4 = quantize(k_chunk, 8, g), quantize(k_chunk, 4, g)
    cases = [
        ("quantize-int8", f"[{h},{t},{d}] g{g}", lambda: quantize(k_chunk, 8, g), k_chunk.nbytes + _nbytes(*codes8)),
        ("quantize-int4", f"[{h},{t},{d}] g{g}", lambda: quantize(k_chunk, 4, g), k_chunk.nbytes + _nbytes(*codes4)),
        ("dequantize-int4", f"[{h},{t},{d}] g{g}", lambda: dequantize(*codes4, 4, g, dtype), k_chunk.nbytes + _nbytes(*codes4)),
        ("participation-scores", f"q[{h},{t},{d}] k[{h},{cache},{d}]",
         lambda: participation_scores(q_recent, k_cache, sum_heads=True), q_recent.nbytes + k_cache.nbytes),
        ("segment-similarity", f"[{h},4,{t},{d}] n6", lambda: segment_similarity(frames, 6), frames.nbytes),
    ]
    rows = []
    for backend in backends:
        with attention_backend(backend):
            for op, shape, fn, moved in cases:
                ms = _time(fn, device, args.repeat, args.warmup)
                rows.append(_row(op, backend, shape, ms, 0, moved, _peak_mb(fn, device, moved, _allocated(device))))
    return rows


# ------------------------------------------------------------------------------------------- measuring


def _time(fn, device: str, repeat: int, warmup: int = 3) -> float:
    """Median milliseconds over `repeat` calls after `warmup` calls."""
    import torch

    for _ in range(warmup):
        fn()
    samples = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(max(1, repeat)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
    else:
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return samples[len(samples) // 2]


def _peak_mb(fn, device: str, inputs: int, base: int) -> float | None:
    """Bytes held at the peak of one call, inputs included, in MB (None if the CPU profiler cannot tell)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 1e6
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            fn()
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
        totals = [sum(s) for s in sizes]
        transient = (max(totals) - totals[0]) if totals else 0
    except Exception:  # private profiler API: report nothing rather than a wrong number
        return None
    return (inputs + transient) / 1e6


def _cpu_name(threads: int) -> str:
    import os
    import platform

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"cpu {platform.processor() or platform.machine()} ({threads} of {os.cpu_count()} threads, load {load:.1f})"


def _allocated(device: str) -> int:
    import torch

    return torch.cuda.memory_allocated() if device == "cuda" else 0


def _nbytes(*objs) -> int:
    """Bytes of tensors, tuples of tensors and KV views (every tensor field of every segment)."""
    import torch

    from reverie.kernels.view import KVView

    total = 0
    for obj in objs:
        if isinstance(obj, torch.Tensor):
            total += obj.nbytes
        elif isinstance(obj, KVView):
            total += obj.q_pos.nbytes
            for seg in obj.segments:
                total += sum(getattr(seg, f).nbytes for f in seg.__slots__ if isinstance(getattr(seg, f), torch.Tensor))
        elif isinstance(obj, (tuple, list)):
            total += _nbytes(*obj)
    return total


def _row(op, backend, shape, ms, flops, moved, peak) -> dict:
    secs = ms / 1e3
    return {"op": op, "backend": backend, "shape": shape, "ms": round(ms, 4),
            "tflops": round(flops / secs / 1e12, 4) if flops else 0.0,
            "gbps": round(moved / secs / 1e9, 3), "peak_mb": None if peak is None else round(peak, 3)}


def _ratios(rows: list[dict]) -> list[str]:
    """Acceptance ratios per visible-token count: gathered Triton vs the best dense baseline, int8/int4 vs float."""
    lines = []
    by_kv: dict[str, dict[tuple[str, str], dict]] = {}
    for r in rows:
        if r["op"].startswith("attend"):
            by_kv.setdefault(r["shape"].split()[2], {})[(r["op"], r["backend"])] = r
    for kv, rs in by_kv.items():
        gathered = rs.get(("attend-float-gather-bias", "triton"))
        dense = rs.get(("attend-dense", "flash-attn")) or rs.get(("attend-dense", "torch-sdpa"))
        if gathered and dense:
            lines.append(f"{kv}: triton gathered+bias / {dense['backend']} dense throughput = {dense['ms'] / gathered['ms']:.2f}")
        for backend in ("triton", "torch"):
            base = rs.get(("attend-float-gather-bias", backend))
            for bits in ("int8", "int4"):
                quant = rs.get((f"attend-{bits}-gather-bias", backend))
                if base and quant and base["peak_mb"] and quant["peak_mb"]:
                    lines.append(f"{kv}: {backend} {bits} vs float: time x{quant['ms'] / base['ms']:.2f}, "
                                 f"peak memory x{quant['peak_mb'] / base['peak_mb']:.2f}")
    return lines


def _print_table(device: str, rows: list[dict]) -> None:
    print(f"kernels on {device}")
    print(f"{'op':<26} {'backend':<11} {'ms':>9} {'TFLOP/s':>8} {'GB/s':>8} {'peak MB':>9}  shape")
    for r in rows:
        peak = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.2f}"
        print(f"{r['op']:<26} {r['backend']:<11} {r['ms']:>9.3f} {r['tflops']:>8.3f} {r['gbps']:>8.2f} {peak:>9}  {r['shape']}")
