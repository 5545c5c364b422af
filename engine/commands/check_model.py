"""`reverie check-model NAME`: the conformance kit (`engine.conformance`) on one model.

Loads the model through its entry point (or `module:factory`), runs every rule, prints a table of what
passed, and exits 1 if a rule failed (a `slow` real-time row is not a failure unless `--strict`). With
`--json` the last line is the report as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registered model name, or module:factory")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="factory argument (repeatable; values parse as JSON when they can)")
    parser.add_argument("--policies", default=None, help="comma-separated memory policies to check (default: all)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the real-time run (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--strict", action="store_true", help="a model slower than real time fails")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    import functools

    import torch

    from reverie.engine.conformance import check_model
    from reverie.engine.keyvalues import parse_key_values
    from reverie.world.registry import get_factory

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        kwargs = parse_key_values(args.model_arg)
        factory = get_factory(args.model)
        model = factory(**kwargs)
    except Exception as exc:
        print(f"reverie check-model: cannot load model '{args.model}': {exc}", file=sys.stderr)
        return 2
    policies = args.policies.split(",") if args.policies else None
    report = check_model(model, factory=functools.partial(factory, **kwargs), policies=policies,
                         real_time_s=args.seconds)
    print(f"model {report.model}")
    print(report.table())
    failed = not report.ok or (args.strict and any(r.status == "slow" for r in report.results))
    print("FAILED: " + ", ".join(r.rule for r in report.results if r.status == "fail" or (args.strict and r.status == "slow"))
          if failed else "conforms")
    if args.json:
        print(json.dumps(report.as_dict()))
    return 1 if failed else 0
