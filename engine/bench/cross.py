"""`reverie bench cross`: AnnCA (ANN-restricted cross-attention to a prompt) against full cross-attention.

Two parts, both timed on the CPU (one thread by default):

1. **The model's own calls.** A model that cross-attends through `memory.ann_cross.PromptAttention` (the
   Matrix-Game-2.0-shaped plug-in: `--model matrix-shaped --model-arg cross=ann`, random weights) plays
   `--frames` frames of a seeded random action script in a `Session` (`--policy`, default `deep-sink`).
   Inside `record_calls`, every cross-attention call is also run in full on the same queries: `rel_err` is
   the mean `||O_ann - O_full|| / ||O_full||` over calls, `ms_ann` / `ms_full` the mean time of one call
   each way, `mass` the mean share of the full attention's weight on the tokens read, `tokens_read` the
   mean count of prompt tokens a query reads (of `prompt_tokens`; at most `probes x 2 x cluster_size`).
2. **Prompt length** (synthetic tensors at the model's head geometry, queries of one chunk): the cost and
   error of one call as the prompt grows (`--lengths`), for two kinds of prompt: `diffuse` (Gaussian keys
   and queries: every query spreads its weight over the whole prompt, which no top-k can follow) and
   `grouped` (keys in groups of 8 near-duplicates around random centres, each query looking for one
   group, as a trained model's peaked attention does).

The last line with `--json`: `{"model", "calls": {...}, "ms_per_frame", "lengths": [{"kind", "prompt_tokens",
"tokens", "rel_err", "mass", "ms_ann", "ms_full", "speedup"}]}`.
"""

from __future__ import annotations

import argparse
import statistics
import time

from reverie.engine.bench.report import finish

GROUP = 8  # near-duplicate keys per group in the `grouped` prompts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.bench.memory import add_run_arguments

    add_run_arguments(parser)
    parser.set_defaults(model="matrix-shaped")
    parser.add_argument("--frames", type=int, default=48, help="video frames the model plays (default 48)")
    parser.add_argument("--policy", default="deep-sink", help="memory policy (default: deep-sink)")
    parser.add_argument("--lengths", default="60,256,1024,4096", help="synthetic prompt lengths (default 60,256,1024,4096)")
    parser.add_argument("--probes", type=int, default=4, help="clusters a query reads, synthetic rows (default 4)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per synthetic row (median)")


def run(args: argparse.Namespace) -> int:
    import torch

    from reverie.engine.bench.memory import load_world_model

    model = load_world_model(args)
    if not model.spec.prompt_tokens:
        raise SystemExit(f"reverie bench cross: model '{args.model}' takes no prompt (ModelSpec.prompt_tokens = 0)")
    try:
        lengths = [int(n) for n in args.lengths.split(",") if n.strip()]
    except ValueError:
        raise SystemExit(f"reverie bench cross: --lengths must be comma-separated integers, got '{args.lengths}'")
    with torch.inference_mode():
        calls, ms_frame = model_calls(model, args)
        spec = model.spec
        rows = [length_row(kind, n, args.probes, spec.heads, spec.head_dim,
                           spec.chunk_frames * spec.tokens_per_frame, args.repeat, args.seed)
                for kind in ("diffuse", "grouped") for n in lengths]
    print_report(args.model, calls, ms_frame, rows)
    return finish({"model": args.model, "calls": calls, "ms_per_frame": ms_frame, "lengths": rows}, args.json)


def model_calls(model, args) -> tuple[dict, float]:
    """Play the model with every cross-attention call also run in full (part 1 of the module docstring)."""
    import numpy as np

    from reverie.engine.bench.episodes import random_episode
    from reverie.engine.session import Session
    from reverie.memory.ann_cross import record_calls

    spec = model.spec
    session = Session(model, np.full(spec.frame_shape, 128, np.uint8), policy=args.policy, seed=args.seed)
    per_chunk = spec.frames_per_chunk
    chunks = max(1, args.frames // per_chunk)
    episode = random_episode(spec, args.seed, 1 + chunks * per_chunk)
    seconds = []
    with record_calls() as rec:
        for c in range(chunks):
            t0 = time.perf_counter()
            session.generate(episode.actions[1 + c * per_chunk: 1 + (c + 1) * per_chunk])
            seconds.append(time.perf_counter() - t0)
    if not rec.rel_err:
        raise SystemExit("reverie bench cross: the model made no PromptAttention calls (does it cross-attend "
                         "through reverie.memory.ann_cross?)")
    calls = {"count": len(rec.rel_err), "rel_err": statistics.fmean(rec.rel_err), "mass": statistics.fmean(rec.mass),
             "prompt_tokens": rec.prompt_tokens[0], "tokens_read": statistics.fmean(rec.tokens_read),
             "ms_ann": statistics.fmean(rec.ms_ann), "ms_full": statistics.fmean(rec.ms_full)}
    # each call ran twice inside the recording: the frame time counts the restricted call only
    ms_frame = 1e3 * (sum(seconds) - sum(rec.ms_full) / 1e3) / (chunks * per_chunk)
    return calls, ms_frame


def synthetic_prompt(kind: str, n: int, heads: int, head_dim: int, nq: int, seed: int):
    """Queries `[H, nq, D]`, keys and values `[H, n, D]` of a `diffuse` or `grouped` prompt (module docstring)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(heads, n, head_dim, generator=gen)
    if kind == "diffuse":
        return torch.randn(heads, nq, head_dim, generator=gen), torch.randn(heads, n, head_dim, generator=gen), v
    groups = max(1, n // GROUP)
    centres = torch.nn.functional.normalize(torch.randn(heads, groups, head_dim, generator=gen), dim=-1)
    member = torch.arange(n) % groups
    k = centres[:, member] * 3.0 + 0.3 * torch.randn(heads, n, head_dim, generator=gen)
    wanted = torch.randint(0, groups, (nq,), generator=gen)
    q = centres[:, wanted] * 3.0 + 0.3 * torch.randn(heads, nq, head_dim, generator=gen)
    return q * head_dim ** 0.25, k * head_dim ** 0.25, v  # logits of order 9: peaked, as trained models attend


def length_row(kind: str, n: int, probes: int, heads: int, head_dim: int, nq: int, repeat: int, seed: int) -> dict:
    """One call's error and median time, AnnCA against full, at prompt length `n` (part 2)."""
    from reverie.memory.ann_cross import CrossAnnConfig, PromptAttention, cross_attention_ref

    q, k, v = synthetic_prompt(kind, n, heads, head_dim, nq, seed)
    cfg = CrossAnnConfig(probes=probes)
    ann = PromptAttention(k, v, cfg)
    full = cross_attention_ref(q, k, v)
    err = float((ann(q) - full).norm() / full.norm())
    mass, read = ann.reads(q)
    ms_ann = _median_ms(lambda: ann(q), repeat)
    ms_full = _median_ms(lambda: cross_attention_ref(q, k, v), repeat)
    return {"kind": kind, "prompt_tokens": n, "tokens": read, "rel_err": err, "mass": mass, "ms_ann": ms_ann,
            "ms_full": ms_full, "speedup": ms_full / max(ms_ann, 1e-9)}


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def print_report(model: str, calls: dict, ms_frame: float, rows: list[dict]) -> None:
    print(f"{model}: {calls['count']} cross-attention calls, each query reading {calls['tokens_read']:.1f} of "
          f"{calls['prompt_tokens']} prompt tokens: rel_err {calls['rel_err']:.3f}, mass {calls['mass']:.3f}, "
          f"{calls['ms_ann']:.3f} ms a call against {calls['ms_full']:.3f} ms in full; {ms_frame:.2f} ms a frame")
    print(f"{'prompt':>8} {'tokens':>10} {'rel_err':>8} {'mass':>6} {'ms ann':>8} {'ms full':>8} {'speedup':>8}")
    for r in rows:
        print(f"{r['kind']:>8} {r['prompt_tokens']:>5}/{r['tokens']:<6.1f} {r['rel_err']:8.3f} {r['mass']:6.3f} {r['ms_ann']:8.3f} "
              f"{r['ms_full']:8.3f} {r['speedup']:8.2f}")
