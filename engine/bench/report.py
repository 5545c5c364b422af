"""How every `reverie bench ...` ends: its human summary is printed first, then, with `--json`, the result as
one JSON line, last, so scripts read `tail -1`; the exit status is 0."""

from __future__ import annotations

import json


def finish(result: dict, as_json: bool) -> int:
    """Print `result` as the last line when `as_json`; the bench's exit status."""
    if as_json:
        print(json.dumps(result))
    return 0
