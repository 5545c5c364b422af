"""Keymaps as data, and the pure functions from held keys to an action.

A keymap is a JSON file (see `input/keymaps/default.json`): `controls` maps each base control of the
action space (`forward`, `back`, `turn_left`, `turn_right`, `strafe_left`, `strafe_right`) to the key names
that hold it, `commands` maps client commands (quit, hud, policy, record, reset, pause, flush) to the keys
that trigger them on press. Key names are pygame's (`pygame.key.name`): "w", "up", "left", "f1",
"return", ... The functions here never touch pygame, so they are tested without a display.

Held keys combine: W + A is `forward+turn_left`; opposing controls held together (W + S) cancel, as the
real game would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from reverie.world.actions import CONTROLS, DOOM_ACTIONS, ActionSpace

COMMANDS = ("quit", "hud", "policy", "record", "reset", "pause", "flush")
DEFAULT_KEYMAP_PATH = Path(__file__).with_name("keymaps") / "default.json"


class KeymapError(ValueError):
    """A keymap file that cannot be used (unknown control or command, a key bound twice, bad JSON)."""


@dataclass(frozen=True, slots=True)
class Keymap:
    """`controls`: control -> keys that hold it; `commands`: command -> keys that trigger it."""

    name: str
    controls: Mapping[str, tuple[str, ...]]
    commands: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        unknown = set(self.controls) - set(CONTROLS)
        if unknown:
            raise KeymapError(f"unknown control(s) {sorted(unknown)}; controls are {list(CONTROLS)}")
        unknown = set(self.commands) - set(COMMANDS)
        if unknown:
            raise KeymapError(f"unknown command(s) {sorted(unknown)}; commands are {list(COMMANDS)}")
        seen: dict[str, str] = {}
        for what, table in (("control", self.controls), ("command", self.commands)):
            for target, keys in table.items():
                if isinstance(keys, str) or not all(isinstance(k, str) and k for k in keys):
                    raise KeymapError(f"{what} '{target}' must map to a list of key names")
                for key in keys:
                    if key in seen:
                        raise KeymapError(f"key '{key}' is bound to both '{seen[key]}' and '{target}'")
                    seen[key] = target

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key name that holds a control (what the client polls each frame)."""
        return tuple(k for keys in self.controls.values() for k in keys)

    @classmethod
    def from_dict(cls, data: dict) -> "Keymap":
        if not isinstance(data, dict):
            raise KeymapError("a keymap is a JSON object with 'controls' and 'commands'")
        controls = {c: tuple(k.lower() for k in keys) if isinstance(keys, list) else keys
                    for c, keys in dict(data.get("controls", {})).items()}
        commands = {c: tuple(k.lower() for k in keys) if isinstance(keys, list) else keys
                    for c, keys in dict(data.get("commands", {})).items()}
        return cls(name=str(data.get("name", "custom")), controls=controls, commands=commands)


def load_keymap(path: str | Path | None = None) -> Keymap:
    """Read a keymap file (the default keymap when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_KEYMAP_PATH
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeymapError(f"keymap file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise KeymapError(f"keymap file {path} is not valid JSON: {exc}") from None
    return Keymap.from_dict(data)


def held_controls(pressed: Iterable[str], keymap: Keymap) -> frozenset[str]:
    """The controls held by a set of pressed key names."""
    pressed = set(pressed)
    return frozenset(c for c, keys in keymap.controls.items() if pressed.intersection(keys))


def action_from_keys(pressed: Iterable[str], keymap: Keymap, space: ActionSpace = DOOM_ACTIONS) -> int:
    """Action index for the pressed key names (opposing controls cancel out)."""
    return space.from_controls(held_controls(pressed, keymap))


def command_for_key(key: str, keymap: Keymap) -> str | None:
    """The command a key press triggers, or None."""
    for command, keys in keymap.commands.items():
        if key in keys:
            return command
    return None
