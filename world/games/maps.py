"""The maps the real game can load, registered by name.

A map is a WAD file plus a map lump inside it. Every WAD used here ships inside the `vizdoom` wheel
(its scenarios folder and the Freedoom IWADs), so nothing is downloaded. Each map has a role: `train`
(rollouts for training data) or `eval` (held out: never used for training, only to measure fidelity).
The maze is where revisits happen (the same corridors seen again from other directions), which is what the
memory policies are measured on.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("train", "eval")


class UnknownMapError(KeyError):
    """Raised for a map name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown map"


@dataclass(frozen=True)
class MapSpec:
    """One loadable map.

    `scenario` is a WAD file name in `vizdoom.scenarios_path` (None: the map lump is in the IWAD itself),
    `lump` the map inside it (`MAP01`...), `iwad` the Freedoom IWAD the textures come from.
    """

    name: str
    lump: str
    role: str
    description: str
    scenario: str | None = None
    iwad: str = "freedoom2.wad"
    maze: bool = False
    #: Engine console commands run at the start of every episode (e.g. removing a goal that ends it).
    console: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"map role must be one of {ROLES}, got {self.role!r}")
        if not self.lump.upper().startswith(("MAP", "E")):
            raise ValueError(f"map lump should look like MAP01 or E1M1, got {self.lump!r}")


MAPS: dict[str, MapSpec] = {}


def register_map(spec: MapSpec) -> MapSpec:
    if spec.name in MAPS:
        raise ValueError(f"map '{spec.name}' is already registered")
    MAPS[spec.name] = spec
    return spec


register_map(MapSpec(
    name="maze", scenario="my_way_home.wad", lump="MAP01", role="train", maze=True,
    console=("remove GreenArmor",),  # picking it up would exit the map; without it episodes never end
    description="ViZDoom 'my way home': a maze of small rooms and corridors; the start room is chosen by "
                "the seed; its goal (green armour) is removed so episodes never end",
))
register_map(MapSpec(
    name="freedoom2-map01", lump="MAP01", role="train",
    description="Freedoom Phase 2 MAP01, monsters off: rooms, corridors and a courtyard",
))
for _lump in ("MAP03", "MAP04", "MAP05", "MAP06"):
    register_map(MapSpec(
        name=f"freedoom2-{_lump.lower()}", lump=_lump, role="train",
        description=f"Freedoom Phase 2 {_lump}, monsters off: more training variety (the bundled model did not "
                    "train on it)",
    ))
register_map(MapSpec(
    name="freedoom2-map02", lump="MAP02", role="eval",
    description="Freedoom Phase 2 MAP02, monsters off: held out from training, for evaluation",
))
register_map(MapSpec(
    name="freedoom2-map07", lump="MAP07", role="eval",
    description="Freedoom Phase 2 MAP07, monsters off: a second held-out map",
))

#: The map `reverie record` uses when none is given, and the held-out map evaluation uses by default.
DEFAULT_TRAIN_MAP = "maze"
DEFAULT_EVAL_MAP = "freedoom2-map02"


def get_map(name: str) -> MapSpec:
    """The registered map called `name`; raises `UnknownMapError` listing the known names."""
    try:
        return MAPS[name]
    except KeyError:
        known = ", ".join(f"{n} ({s.role})" for n, s in MAPS.items())
        raise UnknownMapError(f"unknown map '{name}'; registered maps: {known}") from None


def maps_for(role: str) -> list[str]:
    """Names of the registered maps with this role."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    return [n for n, s in MAPS.items() if s.role == role]
