"""`KEY=VALUE` command-line items (`--model-arg`, `--set`) -> keyword arguments."""

from __future__ import annotations

import json


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
