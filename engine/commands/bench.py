"""`reverie bench NAME`: every benchmark is its own module under `engine.bench`.

Each bench prints a human-readable table and, with `--json`, one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import importlib

# Each bench is the module `reverie.engine.bench.NAME`; its docstring's first line is its help.
BENCHES = ("record", "model", "ceiling", "freeplay", "events", "flood", "memory", "longrun", "kernels", "cross", "play",
           "cluster")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name in BENCHES:
        module_name = f"reverie.engine.bench.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sub.add_parser(name, help="not available in this version yet").set_defaults(_bench_missing=True)
            continue
        p = sub.add_parser(name, help=summary(module))
        p.set_defaults(_bench_module=module_name)
        p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
        module.add_arguments(p)


def summary(module) -> str:
    """A bench module's one-line help: its docstring's first line, less the "`reverie bench NAME`: " lead."""
    lines = (module.__doc__ or "").strip().splitlines()
    return lines[0].split("`: ", 1)[-1].rstrip(".") if lines else ""


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_bench_missing", False):
        raise SystemExit(f"reverie bench {args.bench}: not available in this version yet")
    module = importlib.import_module(args._bench_module)
    return int(module.run(args) or 0)
