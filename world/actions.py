"""The one discrete action space shared by the real game, the models and the client keymaps.

An action is a set of held controls. The base controls are `forward`, `back`, `turn_left`, `turn_right`,
`strafe_left` and `strafe_right`; an action holds at most one control of each opposing pair (a keyboard
can press W and S together, but the game would cancel them, so such chords map to neither). Names join
the held controls with `+` in the canonical order below, e.g. `forward+turn_left`; nothing held is
`noop`. That gives 3 x 3 x 3 = 27 actions, indexed in a fixed order that models embed and rollouts store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from itertools import product
from typing import Iterable

CONTROLS: tuple[str, ...] = ("forward", "back", "turn_left", "turn_right", "strafe_left", "strafe_right")
_PAIRS: tuple[tuple[str, str], ...] = (("forward", "back"), ("turn_left", "turn_right"), ("strafe_left", "strafe_right"))
NOOP = "noop"
GAME_TICS_PER_SECOND = 35.0
"""The real game's clock (Doom's tic rate). An action is held for a model's `tics_per_step` of these tics,
so a model runs at the game's own speed at `GAME_TICS_PER_SECOND / tics_per_step` frames per second."""


class UnknownActionError(ValueError):
    """Raised for an action name or index that is not in the action space."""


def _canonical(controls: Iterable[str]) -> tuple[str, ...]:
    held = set(controls)
    unknown = held - set(CONTROLS)
    if unknown:
        raise UnknownActionError(f"unknown control(s) {sorted(unknown)}; controls are {list(CONTROLS)}")
    return tuple(c for c in CONTROLS if c in held)


@dataclass(frozen=True)
class ActionSpace:
    """A fixed, ordered set of actions over `CONTROLS`.

    Index 0 is always `noop`. `names[i]` is the canonical name of action `i`.
    """

    names: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.names or self.names[0] != NOOP:
            raise ValueError("an action space starts with 'noop'")
        if len(set(self.names)) != len(self.names):
            raise ValueError("action names must be unique")
        for name in self.names[1:]:
            if "+".join(_canonical(name.split("+"))) != name:
                raise ValueError(f"'{name}' is not a canonical action name")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.names)})

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of an action name; accepts controls in any order (`turn_left+forward`)."""
        key = self.canonical_name(name)
        try:
            return self._index[key]
        except KeyError:
            raise UnknownActionError(f"action '{name}' is not in this action space") from None

    def name(self, index: int) -> str:
        if not 0 <= int(index) < len(self.names):
            raise UnknownActionError(f"action index {index} is outside 0..{len(self.names) - 1}")
        return self.names[int(index)]

    @staticmethod
    def canonical_name(name: str) -> str:
        name = name.strip()
        if name == NOOP or name == "":
            return NOOP
        return "+".join(_canonical(part.strip() for part in name.split("+"))) or NOOP

    def from_controls(self, held: Iterable[str]) -> int:
        """Action index for a set of held controls; opposing controls held together cancel out."""
        held = set(held)
        for a, b in _PAIRS:
            if a in held and b in held:
                held -= {a, b}
        return self.index("+".join(_canonical(held)) or NOOP)

    def controls(self, index: int) -> tuple[str, ...]:
        name = self.name(index)
        return () if name == NOOP else tuple(name.split("+"))

    def buttons(self, index: int) -> list[int]:
        """0/1 vector over `CONTROLS` (the order the game's buttons are declared in)."""
        held = set(self.controls(index))
        return [int(c in held) for c in CONTROLS]

    @cached_property
    def button_table(self) -> list[list[int]]:
        return [self.buttons(i) for i in range(len(self.names))]


def _all_names() -> tuple[str, ...]:
    names = []
    for move, turn, strafe in product((None, "forward", "back"), (None, "turn_left", "turn_right"),
                                      (None, "strafe_left", "strafe_right")):
        held = [c for c in (move, turn, strafe) if c]
        names.append("+".join(_canonical(held)) or NOOP)
    # noop first, then by number of held controls, then canonical order: stable and readable.
    order = {c: i for i, c in enumerate(CONTROLS)}
    names.sort(key=lambda n: (0, ()) if n == NOOP else (len(n.split("+")), tuple(order[c] for c in n.split("+"))))
    return tuple(names)


#: The action space of the real game and of every built-in model.
DOOM_ACTIONS = ActionSpace(_all_names())
