"""World models by name: built-ins plus third-party models from the `reverie.world_models` entry points.

An entry is a lazy `"module:attr"` string naming a factory `(**kwargs) -> WorldModel`, so listing models
imports nothing. Third-party packages declare, in their pyproject.toml:

    [project.entry-points."reverie.world_models"]
    my-model = "my_package.model:build"

A plug-in that fails to import is reported when it is asked for by name, never at listing time.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable

from reverie.world.contract import WorldModel

ENTRY_POINT_GROUP = "reverie.world_models"

_BUILTIN: dict[str, str] = {
    "default": "reverie.world.dit.default:build",
}
_REGISTERED: dict[str, Callable[..., WorldModel]] = {}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def register(name: str, factory: Callable[..., WorldModel]) -> None:
    """Register a factory in-process (tests, notebooks); entry points are the way for packages."""
    _REGISTERED[name] = factory


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names of every model that can be loaded (built-in, registered, installed plug-ins)."""
    return sorted({*_BUILTIN, *_REGISTERED, *_entry_points()})


def _resolve(target: str) -> Callable[..., WorldModel]:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def get_factory(name: str) -> Callable[..., WorldModel]:
    """The factory registered under `name` (or `module:attr`), without calling it."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    target = _BUILTIN.get(name) or _entry_points().get(name) or (name if ":" in name else None)
    if target is None:
        raise UnknownModelError(f"unknown model '{name}'; available: {', '.join(available()) or 'none'}")
    try:
        return _resolve(target)
    except (ImportError, AttributeError) as exc:
        raise UnknownModelError(f"model '{name}' ({target}) could not be loaded: {exc}") from exc


def load_model(name: str, **kwargs) -> WorldModel:
    """Build the model registered under `name` (keyword arguments go to its factory); `module:attr` names a
    factory directly (test and development models)."""
    factory = get_factory(name)
    model = factory(**kwargs)
    if not isinstance(model, WorldModel):
        raise TypeError(f"model factory for '{name}' returned {type(model).__name__}, not a WorldModel")
    return model
