"""`reverie bench NAME`: every benchmark is its own module under `engine.bench`.

Each bench prints a human-readable table and, with `--json`, one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES: dict[str, tuple[str, str]] = {
    "record": ("reverie.engine.bench.record", "recording the real game to disk (frames per second)"),
    "model": ("reverie.engine.bench.model", "default model fidelity vs the real game, and denoise speed"),
    "ceiling": ("reverie.engine.bench.ceiling", "how far moving the last frame can get: the game's own depth and eye"),
    "freeplay": ("reverie.engine.bench.freeplay", "free play vs the real game: realism, sharpness, motion, turns, fps"),
    "flood": ("reverie.engine.bench.flood", "a hostile flood beside a player: frame gaps, joins, server memory"),
    "memory": ("reverie.engine.bench.memory", "every memory policy at several budgets on one seeded rollout"),
    "longrun": ("reverie.engine.bench.longrun", "memory and speed flatness over thousands of frames"),
    "kernels": ("reverie.engine.bench.kernels", "attention and cache kernels per backend"),
    "play": ("reverie.engine.bench.play", "end-to-end server + bot client over TCP loopback"),
    "cluster": ("reverie.engine.bench.cluster", "many players through the gateway on a simulated Ray cluster, a node removed"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, (module_name, help_text) in BENCHES.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_bench_module=module_name)
        p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            p.set_defaults(_bench_missing=True)
            continue
        module.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_bench_missing", False):
        raise SystemExit(f"reverie bench {args.bench}: not available in this version yet")
    module = importlib.import_module(args._bench_module)
    return int(module.run(args) or 0)
