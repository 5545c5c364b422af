"""Action spaces declared by the model: named buttons (multi-hot), continuous axes, and how they encode.

A model's `ModelSpec.action_space` says what a player controls and what the model is given:

* **buttons**: named controls a player holds, any set of them at once (`forward`, `jump`, `attack` ...);
  `opposing` pairs cancel when held together (W + S moves neither way, as a game would);
* **axes**: continuous controls with a range (`Axis`: mouse dx / dy, a gamepad stick), each with the client
  source it reads by default (`mouse_x`, `mouse_y`) and a scale from that source's units to the axis's;
* **encoding**: what `denoise` / `commit` receive per frame.
  - `"index"`: one of the space's button combinations, an int64 index into `names` (noop first, then by
    the number of held buttons). The Doom space is this (27 combinations of 6 buttons in 3 opposing pairs).
  - `"vector"`: float32 `[dim]`, the buttons as 0/1 in declared order followed by the axes' values.
* **keys**: default key names per button (data; the client's keymap derives from them, see
  `input.keymap.keymap_for`).

One frame's action, as the engine holds it (an *action value*), is an `int` for an index space and a tuple
of `dim` floats for a vector space. `coerce` turns every outside form into one, with a clear error: an index,
a name (`"forward+turn_left"`, buttons in any order), a structured map `{"buttons": [...], "axes": {...} or
[...]}` (the wire form), or a vector. `tensor` batches values for the model; `describe` / `from_description`
carry the space through the wire and recordings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

CONTROLS: tuple[str, ...] = ("forward", "back", "turn_left", "turn_right", "strafe_left", "strafe_right")
_PAIRS: tuple[tuple[str, str], ...] = (("forward", "back"), ("turn_left", "turn_right"), ("strafe_left", "strafe_right"))
NOOP = "noop"
GAME_TICS_PER_SECOND = 35.0
"""The real game's clock (Doom's tic rate). An action is held for a model's `tics_per_step` of these tics,
so a model runs at the game's own speed at `GAME_TICS_PER_SECOND / tics_per_step` frames per second."""

ENCODINGS = ("index", "vector")
AXIS_SOURCES = ("", "mouse_x", "mouse_y")
MAX_BUTTONS, MAX_AXES, MAX_COMBINATIONS = 64, 16, 4096
MAX_NAME = 32

ActionValue = int | tuple[float, ...]


class UnknownActionError(ValueError):
    """An action (name, index, map or vector) that is not in the action space."""


def _check_name(what: str, name: Any) -> str:
    if (not isinstance(name, str) or not name or len(name) > MAX_NAME or name == NOOP
            or not all(c.isalnum() or c in "_-." for c in name)):
        raise ValueError(f"{what} name must be 1-{MAX_NAME} characters of letters, digits, '_', '-' or '.' "
                         f"(and not '{NOOP}'), got {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Axis:
    """A continuous control in `[low, high]`.

    `source` is what the client reads it from by default (`mouse_x` / `mouse_y`: relative mouse motion
    accumulated between frames; "" for none, bound in a keymap), `scale` the axis units per source unit
    (per pixel of mouse motion; negative inverts) before the player's sensitivity multiplies it.
    """

    name: str
    low: float = -1.0
    high: float = 1.0
    source: str = ""
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_name("axis", self.name)
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"axis '{self.name}' needs finite low < high, got [{self.low}, {self.high}]")
        if self.source not in AXIS_SOURCES:
            raise ValueError(f"axis '{self.name}' source must be one of {AXIS_SOURCES}, got {self.source!r}")
        if not (math.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"axis '{self.name}' scale must be finite and non-zero (negative inverts), got {self.scale}")

    def clip(self, value: float) -> float:
        return min(self.high, max(self.low, float(value)))


@dataclass(frozen=True)
class ActionSpace:
    """The controls a model declares (see the module docstring). Frozen and hashable."""

    buttons: tuple[str, ...]
    axes: tuple[Axis, ...] = ()
    opposing: tuple[tuple[str, str], ...] = ()
    encoding: str = "vector"
    keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
    names: tuple[str, ...] = field(init=False, compare=False)
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        buttons = tuple(_check_name("button", b) for b in self.buttons)
        if not buttons and not self.axes:
            raise ValueError("an action space needs at least one button or axis")
        if len(buttons) > MAX_BUTTONS or len(self.axes) > MAX_AXES:
            raise ValueError(f"at most {MAX_BUTTONS} buttons and {MAX_AXES} axes")
        names = [*buttons, *(a.name for a in self.axes)]
        if len(set(names)) != len(names):
            raise ValueError(f"button and axis names must be unique, got {names}")
        paired: set[str] = set()
        for pair in self.opposing:
            if len(pair) != 2 or not set(pair) <= set(buttons) or pair[0] == pair[1] or paired & set(pair):
                raise ValueError(f"opposing pairs are two distinct buttons, each in one pair; got {pair!r}")
            paired |= set(pair)
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        for button, key_names in self.keys:
            if button not in buttons or isinstance(key_names, str) or not all(isinstance(k, str) and k for k in key_names):
                raise ValueError(f"keys: '{button}' must be a button of the space with a list of key names")
        object.__setattr__(self, "buttons", buttons)
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "opposing", tuple(tuple(p) for p in self.opposing))
        object.__setattr__(self, "keys", tuple((b, tuple(k)) for b, k in self.keys))
        combos: tuple[str, ...] = ()
        if self.encoding == "index":
            if self.axes:
                raise ValueError("an index action space has no axes (use encoding='vector')")
            combos = self._combinations()
        object.__setattr__(self, "names", combos)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(combos)})

    def _combinations(self) -> tuple[str, ...]:
        """Every held set (at most one of each opposing pair), noop first, then by count, then button order."""
        paired = {b for p in self.opposing for b in p}
        groups = [(None, a, b) for a, b in self.opposing] + [(None, b) for b in self.buttons if b not in paired]
        count = math.prod(len(g) for g in groups)
        if count > MAX_COMBINATIONS:
            raise ValueError(f"{count} button combinations are too many for an index space (max {MAX_COMBINATIONS}); "
                             "use encoding='vector'")
        order = {b: i for i, b in enumerate(self.buttons)}
        held = [sorted((b for b in combo if b), key=order.__getitem__) for combo in product(*groups)]
        held.sort(key=lambda h: (len(h), tuple(order[b] for b in h)))
        return tuple("+".join(h) or NOOP for h in held)

    # --- shape -------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Width of a vector action: buttons then axes."""
        return len(self.buttons) + len(self.axes)

    def __len__(self) -> int:
        """Number of actions of an index space (what a model's action embedding is sized by)."""
        if self.encoding != "index":
            raise TypeError(f"a vector action space has no fixed number of actions; its vectors are {self.dim} wide")
        return len(self.names)

    @property
    def noop(self) -> ActionValue:
        return 0 if self.encoding == "index" else (0.0,) * self.dim

    @property
    def default_keys(self) -> dict[str, tuple[str, ...]]:
        return dict(self.keys)

    # --- index spaces: names <-> indices ------------------------------------------------------------------
    def canonical_name(self, name: str) -> str:
        """`name` with its buttons in declared order (`turn_left+forward` -> `forward+turn_left`)."""
        parts = [p.strip() for p in name.strip().split("+") if p.strip()]
        if not parts or parts == [NOOP]:
            return NOOP
        unknown = set(parts) - set(self.buttons)
        if unknown:
            raise UnknownActionError(f"unknown button(s) {sorted(unknown)}; buttons are {list(self.buttons)}")
        return "+".join(b for b in self.buttons if b in parts)

    def index(self, name: str) -> int:
        """Index of an action name in an index space; buttons in any order."""
        self._need_index()
        key = self.canonical_name(name)
        try:
            return self._index[key]
        except KeyError:
            raise UnknownActionError(f"action '{name}' is not in this action space (opposing buttons cancel)") from None

    def name(self, index: int) -> str:
        self._need_index()
        if not 0 <= int(index) < len(self.names):
            raise UnknownActionError(f"action index {index} is outside 0..{len(self.names) - 1}")
        return self.names[int(index)]

    def controls(self, index: int) -> tuple[str, ...]:
        name = self.name(index)
        return () if name == NOOP else tuple(name.split("+"))

    def button_vector(self, index: int) -> list[int]:
        """0/1 per button, in declared order, of an index action."""
        held = set(self.controls(index))
        return [int(b in held) for b in self.buttons]

    @property
    def button_table(self) -> list[list[int]]:
        return [self.button_vector(i) for i in range(len(self.names))]

    def _need_index(self) -> None:
        if self.encoding != "index":
            raise UnknownActionError("this action space takes structured actions (buttons and axes), not action indices")

    # --- values --------------------------------------------------------------------------------------------
    def from_controls(self, held: Iterable[str], axes: Mapping[str, float] | Sequence[float] | None = None) -> ActionValue:
        """The action value of a set of held buttons (opposing ones cancel) and axis values (clipped to range;
        a map by axis name or a list in declared order; missing axes are 0)."""
        held = set(held)
        unknown = held - set(self.buttons)
        if unknown:
            raise UnknownActionError(f"unknown button(s) {sorted(unknown)}; buttons are {list(self.buttons)}")
        for a, b in self.opposing:
            if a in held and b in held:
                held -= {a, b}
        values = self._axis_values(axes)
        if self.encoding == "index":
            if any(values):
                raise UnknownActionError("this action space has no axes")
            return self._index["+".join(b for b in self.buttons if b in held) or NOOP]
        return tuple(float(b in held) for b in self.buttons) + values

    def _axis_values(self, axes) -> tuple[float, ...]:
        if axes is None:
            return (0.0,) * len(self.axes)
        if isinstance(axes, Mapping):
            unknown = set(axes) - {a.name for a in self.axes}
            if unknown:
                raise UnknownActionError(f"unknown axis/axes {sorted(map(str, unknown))}; axes are {[a.name for a in self.axes]}")
            raw = [axes.get(a.name, 0.0) for a in self.axes]
        elif isinstance(axes, (list, tuple, np.ndarray)):
            if len(axes) != len(self.axes):
                raise UnknownActionError(f"expected {len(self.axes)} axis values, got {len(axes)}")
            raw = list(axes)
        else:
            raise UnknownActionError(f"axes must be a map or a list of numbers, got {type(axes).__name__}")
        out = []
        for axis, v in zip(self.axes, raw):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise UnknownActionError(f"axis '{axis.name}' needs a finite number, got {v!r}")
            out.append(axis.clip(v))
        return tuple(out)

    def coerce(self, action: Any) -> ActionValue:
        """Any outside form of one action -> its action value; raises `UnknownActionError` (a ValueError)."""
        if isinstance(action, (bool, np.bool_)):
            raise UnknownActionError(f"an action is not a boolean, got {action!r}")
        if isinstance(action, (int, np.integer)):
            self.name(action)  # an index space and an index in range, or UnknownActionError
            return int(action)
        if isinstance(action, str):
            if self.encoding == "index":
                return self.index(action)
            name = self.canonical_name(action)
            return self.from_controls(() if name == NOOP else name.split("+"))
        if isinstance(action, Mapping):
            unknown = set(action) - {"buttons", "axes"}
            if unknown:
                raise UnknownActionError(f"an action map has 'buttons' and 'axes', not {sorted(map(str, unknown))}")
            buttons = action.get("buttons", [])
            if not isinstance(buttons, (list, tuple)) or not all(isinstance(b, str) for b in buttons):
                raise UnknownActionError("'buttons' must be a list of button names")
            return self.from_controls(buttons, action.get("axes"))
        if isinstance(action, (list, tuple, np.ndarray)):
            if self.encoding == "index":
                raise UnknownActionError("this action space takes an action index or name, not a vector")
            vec = np.asarray(action, dtype=np.float64).reshape(-1)
            if vec.shape != (self.dim,):
                raise UnknownActionError(f"an action vector has {self.dim} values, got {len(action)}")
            held = [b for b, v in zip(self.buttons, vec) if v > 0.5]
            return self.from_controls(held, vec[len(self.buttons):])
        raise UnknownActionError(f"an action is an index, a name, a map or a vector, got {type(action).__name__}")

    def coerce_many(self, actions: Any) -> list[ActionValue]:
        """A sequence of actions (a list, an int64 `[T]` array, a float `[T, dim]` array) -> values."""
        if isinstance(actions, np.ndarray) or hasattr(actions, "numpy"):
            arr = np.asarray(actions.cpu() if hasattr(actions, "cpu") else actions)
            if self.encoding == "vector" and arr.ndim == 1 and arr.shape[0] == self.dim:
                arr = arr[None]
            return [self.coerce(a) for a in (arr.reshape(-1) if self.encoding == "index" else arr)]
        if isinstance(actions, (int, str, Mapping, np.integer)):
            return [self.coerce(actions)]
        return [self.coerce(a) for a in actions]

    def aggregate(self, values: Sequence[ActionValue]) -> ActionValue:
        """One action for several frames (a latent that covers them): the buttons held in any of them
        (opposing ones cancelling) and the mean of each axis."""
        held: set[str] = set()
        axes = np.zeros(len(self.axes))
        for v in values:
            buttons, moved = self.held(v)
            held.update(buttons)
            axes += np.asarray(moved, dtype=np.float64)
        return self.from_controls(held, list(axes / max(1, len(values))))

    def sample(self, rng) -> ActionValue:
        """A random action (`rng`: a `random.Random`): a uniform index, or each button held with
        probability 1/2 and each axis uniform in its range."""
        if self.encoding == "index":
            return rng.randrange(len(self.names))
        held = [b for b in self.buttons if rng.random() < 0.5]
        return self.from_controls(held, [rng.uniform(a.low, a.high) for a in self.axes])

    def label(self, value: ActionValue) -> str:
        """Readable name of a value: `forward+jump`, with non-zero axes after it (`forward dx=+2.5`)."""
        if self.encoding == "index":
            return self.name(value)
        held = [b for b, v in zip(self.buttons, value) if v]
        text = "+".join(held) or NOOP
        moved = [f"{a.name}={v:+g}" for a, v in zip(self.axes, value[len(self.buttons):]) if v]
        return " ".join([text, *moved])

    def held(self, value: ActionValue) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """(held buttons, axis values) of a value."""
        if self.encoding == "index":
            return self.controls(value), ()
        return tuple(b for b, v in zip(self.buttons, value) if v), tuple(value[len(self.buttons):])

    def translate(self, value: ActionValue, target: "ActionSpace") -> ActionValue:
        """The same held buttons and axes (by name) in `target`, e.g. a Doom rollout's actions for a model
        with its own space; raises `UnknownActionError` for a held button or moved axis `target` lacks."""
        if target == self:
            return value
        buttons, axes = self.held(value)
        moved = {a.name: v for a, v in zip(self.axes, axes) if v}
        return target.from_controls(buttons, moved)

    def to_wire(self, value: ActionValue) -> Any:
        """The wire / JSON form: the index, or `{"buttons": [...], "axes": [...]}`."""
        if self.encoding == "index":
            return int(value)
        buttons, axes = self.held(value)
        return {"buttons": list(buttons), "axes": list(axes)}

    def array(self, values: Sequence[ActionValue]) -> np.ndarray:
        """int64 `[T]` (index) or float32 `[T, dim]` (vector)."""
        if self.encoding == "index":
            return np.asarray(values, dtype=np.int64).reshape(-1)
        return np.asarray(values, dtype=np.float32).reshape(len(values), self.dim)

    def tensor(self, values: Sequence[ActionValue], device=None):
        """What `denoise` / `commit` receive: int64 `[T]` or float32 `[T, dim]` on `device`."""
        import torch

        return torch.from_numpy(self.array(values)).to(device)

    # --- description (wire, recordings) ---------------------------------------------------------------
    def describe(self) -> dict:
        return {"buttons": list(self.buttons),
                "axes": [{"name": a.name, "low": a.low, "high": a.high, "source": a.source, "scale": a.scale}
                         for a in self.axes],
                "opposing": [list(p) for p in self.opposing], "encoding": self.encoding,
                "keys": {b: list(k) for b, k in self.keys}}

    @classmethod
    def from_description(cls, data: Any) -> "ActionSpace":
        """Inverse of `describe`; raises ValueError on anything malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an action space description is a map, got {type(data).__name__}")
        try:
            axes = tuple(Axis(name=a["name"], low=float(a["low"]), high=float(a["high"]),
                              source=str(a.get("source", "")), scale=float(a.get("scale", 1.0)))
                         for a in data.get("axes", []))
            keys = data.get("keys", {})
            return cls(buttons=tuple(data["buttons"]), axes=axes,
                       opposing=tuple(tuple(p) for p in data.get("opposing", [])),
                       encoding=str(data.get("encoding", "vector")),
                       keys=tuple((b, tuple(k)) for b, k in (keys.items() if isinstance(keys, Mapping) else ())))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"bad action space description: {exc!r}") from None


#: The action space of the real game and of every built-in model: 6 buttons in 3 opposing pairs, 27 actions.
DOOM_ACTIONS = ActionSpace(
    buttons=CONTROLS, opposing=_PAIRS, encoding="index",
    keys=(("forward", ("w", "up")), ("back", ("s", "down")), ("turn_left", ("a", "left")),
          ("turn_right", ("d", "right")), ("strafe_left", ("q",)), ("strafe_right", ("e",))))
