"""`KEY=VALUE` command-line items (`--model-arg`, `--set`) -> keyword arguments, and the `--model` /
`--model-arg` pair every command that loads a model takes."""

from __future__ import annotations

import argparse
import json


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model NAME` (default: the bundled `default`) and repeatable `--model-arg KEY=VALUE`."""
    parser.add_argument("--model", default="default", help="registered world model (default: default)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword for the model factory, repeatable; values parse as JSON where they can "
                             "(e.g. checkpoint=runs/x/model.safetensors, pretrained=false)")


def parse_key_values(items: list[str], flag: str = "--model-arg") -> dict:
    """`KEY=VALUE` strings -> dict; values parse as JSON where they can (`3`, `0.5`, `[1.0, 0.5]`), `true`/
    `false` in any case as booleans, anything else stays a string. A malformed item stops with a message
    naming `flag`."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects KEY=VALUE, got {item!r}")
        low = raw.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        else:
            try:
                out[key] = json.loads(raw)
            except json.JSONDecodeError:
                out[key] = raw
    return out
