"""Action files: JSON lists of actions, one per step, for `reverie rollout --actions`, the replay driver and
the bot.

Each item is any form `ActionSpace.coerce` takes: a name (`"forward+turn_left"`; `"noop"`), an index of an
index space, a map `{"buttons": ["forward", "jump"], "axes": {"yaw": 0.5}}`, or a vector. A map may add
`"repeat": N` to hold the action for N steps (1-100000). Errors name the bad step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reverie.world.actions import DOOM_ACTIONS, ActionSpace, ActionValue, UnknownActionError

MAX_REPEAT = 100_000


def parse_actions(items: list[Any], space: ActionSpace = DOOM_ACTIONS) -> list[ActionValue]:
    """Items of an action file -> action values of `space`; raises ValueError naming the bad step."""
    out: list[ActionValue] = []
    for i, item in enumerate(items):
        try:
            repeat = 1
            if isinstance(item, dict) and "repeat" in item:
                item = dict(item)
                repeat = item.pop("repeat")
                if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
                    raise UnknownActionError(f"'repeat' must be an integer in 1..{MAX_REPEAT}, got {repeat!r}")
            out.extend([space.coerce(item)] * repeat)
        except UnknownActionError as exc:
            raise ValueError(f"step {i}: {exc}") from None
    if not out:
        raise ValueError("the action list is empty")
    return out


def read_json(path: str | Path, what: str, error: type[ValueError] = ValueError):
    """The JSON in `path`, or `error` saying that the `what` file (e.g. "action file") is missing or broken."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise error(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON: {exc}") from None


def load_action_file(path: str | Path, space: ActionSpace = DOOM_ACTIONS) -> list[ActionValue]:
    """Read a JSON action file (see the module docstring) into action values, with clear errors."""
    data = read_json(path, "action file")
    if not isinstance(data, list):
        raise ValueError(f"action file {path} must hold a JSON list of actions")
    try:
        return parse_actions(data, space)
    except ValueError as exc:
        raise ValueError(f"action file {path}: {exc}") from None
