"""Keymaps as data, derived from the controls a model declares, and the pure functions from held keys and
mouse motion to an action.

A model's `ActionSpace` declares its buttons, default keys for them, and axes with the client source each
reads (`mouse_x`, `mouse_y`). `keymap_for(space, path)` builds the keymap a session plays with: the space's
default keys (the default file, `input/keymaps/default.json`, fills in buttons they leave out), your
keymap file's bindings over them (JSON, the same layout), and the file's `commands` (quit, hud, policy, record, reset, pause, flush, scene, grab). A key a
model gives to a button is taken from a default command that had it (the command keeps its other keys); in
a file of your own, binding a button the model lacks, or one key twice, is an error. A file's `axes` map
rebinds an axis to another source (`{"yaw": "mouse_y"}`). Key names are pygame's (`pygame.key.name`):
"w", "up", "left", "f1", "return", ... Nothing here touches pygame, so it is tested without a display.

Held keys combine: W + A is `forward+turn_left`; opposing buttons held together (W + S) cancel, as the
real game would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from reverie.world.action_files import read_json
from reverie.world.actions import AXIS_SOURCES, DOOM_ACTIONS, ActionSpace, ActionValue

COMMANDS = ("quit", "hud", "policy", "record", "reset", "pause", "flush", "scene", "grab")
DEFAULT_KEYMAP_PATH = Path(__file__).with_name("keymaps") / "default.json"


class KeymapError(ValueError):
    """A keymap that cannot be used (unknown button or command, a key bound twice, bad JSON)."""


@dataclass(frozen=True, slots=True)
class Keymap:
    """`controls`: button -> keys that hold it; `commands`: command -> keys that trigger it; `axes`: axis ->
    the client source it reads (`mouse_x` / `mouse_y`)."""

    name: str
    controls: Mapping[str, tuple[str, ...]]
    commands: Mapping[str, tuple[str, ...]]
    axes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.commands) - set(COMMANDS)
        if unknown:
            raise KeymapError(f"unknown command(s) {sorted(unknown)}; commands are {list(COMMANDS)}")
        seen: dict[str, str] = {}
        for what, table in (("button", self.controls), ("command", self.commands)):
            for target, keys in table.items():
                if isinstance(keys, str) or not all(isinstance(k, str) and k for k in keys):
                    raise KeymapError(f"{what} '{target}' must map to a list of key names")
                for key in keys:
                    if key in seen:
                        raise KeymapError(f"key '{key}' is bound to both '{seen[key]}' and '{target}'")
                    seen[key] = target
        for axis, source in self.axes.items():
            if source not in AXIS_SOURCES:
                raise KeymapError(f"axis '{axis}' source must be one of {AXIS_SOURCES[1:]}, got {source!r}")

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key name that holds a button (what the client polls each frame)."""
        return tuple(k for keys in self.controls.values() for k in keys)

    @classmethod
    def from_dict(cls, data: dict) -> "Keymap":
        if not isinstance(data, dict):
            raise KeymapError("a keymap is a JSON object with 'controls' and 'commands'")

        def table(key):
            raw = data.get(key, {})
            if not isinstance(raw, dict):
                raise KeymapError(f"'{key}' must be a JSON object")
            return {c: tuple(k.lower() for k in keys) if isinstance(keys, list) else keys for c, keys in raw.items()}

        axes = data.get("axes", {})
        if not isinstance(axes, dict):
            raise KeymapError("'axes' must map axis names to a source (mouse_x, mouse_y)")
        return cls(name=str(data.get("name", "custom")), controls=table("controls"), commands=table("commands"),
                   axes=dict(axes))


def _read(path: Path) -> Keymap:
    return Keymap.from_dict(read_json(path, "keymap file", KeymapError))


def keymap_for(space: ActionSpace = DOOM_ACTIONS, path: str | Path | None = None) -> Keymap:
    """The keymap for a model's declared controls (see the module docstring); `path` is your own file."""
    own = path is not None
    file = _read(Path(path) if own else DEFAULT_KEYMAP_PATH)
    extra = set(file.controls) - set(space.buttons)
    if own and extra:
        raise KeymapError(f"{path} binds {sorted(extra)}, which this model does not have; its buttons are "
                          f"{list(space.buttons)}")
    axis_names = {a.name for a in space.axes}
    if own and set(file.axes) - axis_names:
        raise KeymapError(f"{path} binds axes {sorted(set(file.axes) - axis_names)}, which this model does not "
                          f"have; its axes are {sorted(axis_names)}")
    if own:  # your file wins over the model's keys
        controls = {**space.default_keys, **{b: k for b, k in file.controls.items() if b in space.buttons}}
    else:    # the model's keys win over the default file's, which fills in buttons the model gave none
        controls = {**{b: k for b, k in file.controls.items() if b in space.buttons}, **space.default_keys}
    taken = {k for keys in controls.values() for k in keys}
    commands = dict(file.commands)
    if not own:  # a model's keys win over the default commands' (which keep their other keys)
        commands = {c: tuple(k for k in keys if k not in taken) for c, keys in commands.items()}
    axes = {a.name: file.axes.get(a.name, a.source) for a in space.axes}
    return Keymap(name=file.name, controls=controls, commands=commands, axes=axes)


def load_keymap(path: str | Path | None = None) -> Keymap:
    """The keymap for Doom's controls (the default model's), from `path` or the default file."""
    return keymap_for(DOOM_ACTIONS, path)


def held_controls(pressed: Iterable[str], keymap: Keymap) -> frozenset[str]:
    """The buttons held by a set of pressed key names."""
    pressed = set(pressed)
    return frozenset(c for c, keys in keymap.controls.items() if pressed.intersection(keys))


def axes_from_motion(motion: Mapping[str, float], keymap: Keymap, space: ActionSpace,
                     sensitivity: float = 1.0) -> dict[str, float]:
    """Axis values from source motion accumulated since the last action (`{"mouse_x": pixels, ...}`):
    motion x the axis's scale x the player's sensitivity (clipped to range when the action is made)."""
    return {a.name: motion.get(keymap.axes.get(a.name, a.source), 0.0) * a.scale * sensitivity for a in space.axes}


def action_from_keys(pressed: Iterable[str], keymap: Keymap, space: ActionSpace = DOOM_ACTIONS,
                     axes: Mapping[str, float] | None = None) -> ActionValue:
    """The action value for the pressed key names (opposing buttons cancel) and axis values."""
    return space.from_controls(held_controls(pressed, keymap), axes)


def command_for_key(key: str, keymap: Keymap) -> str | None:
    """The command a key press triggers, or None."""
    for command, keys in keymap.commands.items():
        if key in keys:
            return command
    return None
