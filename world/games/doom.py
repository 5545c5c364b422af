"""The real game: Doom through ViZDoom, headless, seeded and deterministic.

`DoomGame(DoomConfig(map="maze")).reset(seed)` starts an episode and `step(action)` advances it by
`tics_per_step` game tics holding the buttons of one action of `world.actions.DOOM_ACTIONS`. Both return
an `Observation`: the frame as uint8 [H, W, 3] at the configured resolution, the player's pose
`(x, y, angle_degrees)` in map units, and whether the episode has ended.

Frames are rendered at a ViZDoom resolution that is an exact integer multiple `k` of the target (64x48 is
rendered at 256x192, k = 4) and area-averaged over k x k blocks (integer sums, rounded half up), so the
small frame is the true mean of the pixels it covers. HUD, weapon, crosshair, messages, screen flashes and
particles are off; monsters are off (`-nomonsters`); the episode never times out by itself, and maps
with a goal that would end it have the goal removed (`MapSpec.console`). It ends only if the map still
ends it (an exit line) or the player dies (e.g. on a damaging floor); then `done` is True and the
last frame and pose are repeated by further `step` calls until the next `reset`.

Same seed + same action sequence -> the same frames and poses, bit for bit, in any process.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from reverie.world.actions import CONTROLS, DOOM_ACTIONS
from reverie.world.games.maps import DEFAULT_TRAIN_MAP, MapSpec, get_map

# Our control names -> ViZDoom button names, in `CONTROLS` order (the order buttons are declared in).
_BUTTONS = {
    "forward": "MOVE_FORWARD",
    "back": "MOVE_BACKWARD",
    "turn_left": "TURN_LEFT",
    "turn_right": "TURN_RIGHT",
    "strafe_left": "MOVE_LEFT",
    "strafe_right": "MOVE_RIGHT",
}


# The engine ignores the player's input for the first tics of an episode; start after them, so every
# step's action takes effect.
_START_TICS = 10


class GameError(RuntimeError):
    """The game could not be configured or started (bad resolution, missing WAD, engine failure)."""


def _engine_ini_path() -> str:
    """Where the engine keeps its settings file: a per-user temp folder, never the working directory."""
    import tempfile

    folder = os.path.join(tempfile.gettempdir(), f"reverie-vizdoom-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, "_vizdoom.ini")


def parse_resolution(text: str) -> tuple[int, int]:
    """'64x48' -> (64, 48) as (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"resolution must look like 64x48 (width x height), got {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class DoomConfig:
    """How the real game runs. `resolution` is the output frame size as (width, height)."""

    map: str = DEFAULT_TRAIN_MAP
    resolution: tuple[int, int] = (64, 48)
    tics_per_step: int = 1
    monsters: bool = False
    skill: int = 3
    depth: bool = False  # also return a coarse depth map (costs ~30% speed); used by go-and-return

    def __post_init__(self) -> None:
        get_map(self.map)  # clear error for unknown names
        w, h = self.resolution
        if w <= 0 or h <= 0:
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        if self.tics_per_step < 1:
            raise ValueError("tics_per_step must be >= 1")
        if not 1 <= self.skill <= 5:
            raise ValueError("skill must be in 1..5")
        render_resolution(self.resolution)  # raises if no render size fits

    @property
    def map_spec(self) -> MapSpec:
        return get_map(self.map)

    def to_dict(self) -> dict:
        return {"map": self.map, "resolution": list(self.resolution), "tics_per_step": self.tics_per_step,
                "monsters": self.monsters, "skill": self.skill, "depth": self.depth}


@dataclass(frozen=True)
class Observation:
    """One step of the game. frame: uint8 [H, W, 3]; pose: float64 [3] = (x, y, angle in degrees);
    depth: uint8 [H, W] engine depth units (about 1 per 8 map units of distance along the view), only
    when `DoomConfig.depth` is on, else None; camera: float64 [4] = the eye's (x, y, z, angle in
    degrees), z including the view height and its walking bob (`world.games.reproject` uses it)."""

    frame: np.ndarray
    pose: np.ndarray
    done: bool
    step: int
    depth: np.ndarray | None = None
    camera: np.ndarray | None = None


def _vizdoom_resolutions() -> list[tuple[int, int]]:
    # The ViZDoom render sizes, without importing vizdoom (kept in sync with ScreenResolution).
    names = ("160X120 200X125 200X150 256X144 256X160 256X192 320X180 320X200 320X240 320X256 400X225 "
             "400X250 400X300 512X288 512X320 512X384 640X360 640X400 640X480 800X450 800X500 800X600")
    return [tuple(int(v) for v in n.split("X")) for n in names.split()]


def render_resolution(target: tuple[int, int]) -> tuple[int, int, int]:
    """(render_width, render_height, k): the smallest ViZDoom size that is exactly k x the target, k >= 2
    when possible (so every output pixel averages real pixels)."""
    w, h = target
    fits = [(rw, rh, rw // w) for rw, rh in _vizdoom_resolutions()
            if rw % w == 0 and rh % h == 0 and rw // w == rh // h]
    if not fits:
        sizes = sorted({(rw // k, rh // k) for rw, rh in _vizdoom_resolutions() for k in range(1, 11)
                        if rw % k == 0 and rh % k == 0 and rw // k >= 32}, reverse=True)
        examples = ", ".join(f"{a}x{b}" for a, b in sizes[:12])
        raise ValueError(f"resolution {w}x{h} is not an exact fraction of any ViZDoom render size; "
                         f"try one of: {examples}")
    fits.sort(key=lambda f: (f[2] < 2, f[2]))
    return fits[0]


def area_average(frame: np.ndarray, k: int) -> np.ndarray:
    """uint8 [k*H, k*W, C] -> uint8 [H, W, C]: mean over k x k blocks, rounded half up (integer math)."""
    if k == 1:
        return np.ascontiguousarray(frame)
    acc = np.uint16 if k <= 16 else np.uint32
    rows = np.add(frame[0::k], frame[1::k], dtype=acc)  # sum of each block's k rows: [H, k*W, C]
    for i in range(2, k):
        rows += frame[i::k]
    h, kw, c = rows.shape
    rows = rows.reshape(h, kw // k, k, c)
    out = rows[:, :, 0] + rows[:, :, 1]  # then its k columns: [H, W, C]
    for j in range(2, k):
        out += rows[:, :, j]
    n = k * k
    out += n // 2
    out //= n
    return out.astype(np.uint8)


@dataclass
class DoomGame:
    """A running ViZDoom instance (its own engine process). Use as a context manager or call `close()`.

    `reset(seed)` -> Observation at step 0; `step(action_index)` -> Observation after the action.
    """

    config: DoomConfig = field(default_factory=DoomConfig)

    def __post_init__(self) -> None:
        self._rw, self._rh, self._k = render_resolution(self.config.resolution)
        self._game = None
        self._last: Observation | None = None
        self._step = 0
        self._table = [list(map(int, b)) for b in DOOM_ACTIONS.button_table]

    # -- lifecycle -------------------------------------------------------------------------------------
    def _start(self):
        try:
            import vizdoom as vzd
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise GameError("the real game needs the 'vizdoom' package: pip install 'reverie[game]'") from exc
        spec = self.config.map_spec
        g = vzd.DoomGame()
        iwad = os.path.join(os.path.dirname(vzd.__file__), spec.iwad)
        if not os.path.exists(iwad):
            raise GameError(f"the IWAD {spec.iwad} is missing from the vizdoom install ({iwad})")
        g.set_doom_game_path(iwad)
        if spec.scenario:
            g.set_doom_scenario_path(os.path.join(vzd.scenarios_path, spec.scenario))
        g.set_doom_map(spec.lump)
        g.set_doom_config_path(_engine_ini_path())  # not the default ./_vizdoom.ini in the working dir
        g.set_doom_skill(self.config.skill)
        g.set_screen_resolution(getattr(vzd.ScreenResolution, f"RES_{self._rw}X{self._rh}"))
        g.set_screen_format(vzd.ScreenFormat.RGB24)
        for part in ("hud", "minimal_hud", "weapon", "crosshair", "messages", "decals", "particles",
                     "effects_sprites", "screen_flashes", "corpses"):
            getattr(g, f"set_render_{part}")(False)
        g.set_depth_buffer_enabled(self.config.depth)
        g.set_window_visible(False)
        g.set_sound_enabled(False)
        g.set_available_buttons([getattr(vzd.Button, _BUTTONS[c]) for c in CONTROLS])
        g.set_available_game_variables([vzd.GameVariable.POSITION_X, vzd.GameVariable.POSITION_Y,
                                        vzd.GameVariable.ANGLE, vzd.GameVariable.CAMERA_POSITION_X,
                                        vzd.GameVariable.CAMERA_POSITION_Y, vzd.GameVariable.CAMERA_POSITION_Z,
                                        vzd.GameVariable.CAMERA_ANGLE])
        g.set_episode_timeout(0)  # never time out by itself
        g.set_episode_start_time(_START_TICS)
        g.set_living_reward(0)
        if not self.config.monsters:
            g.add_game_args("-nomonsters")
        g.set_mode(vzd.Mode.PLAYER)
        # the engine makes ./_vizdoom/ at start unless it exists, and of two games starting at once in one
        # working directory the one that loses that race aborts its whole process ("Failed to create
        # ./_vizdoom/ directory: File exists"; seen with 16 recording workers on a 16-core machine)
        os.makedirs("_vizdoom", exist_ok=True)
        try:
            g.init()
        except Exception as exc:
            raise GameError(f"ViZDoom failed to start map '{self.config.map}': {exc}") from exc
        self._game = g

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game = None

    def __enter__(self) -> "DoomGame":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; the engine is a child process
        try:
            self.close()
        except Exception:
            pass

    # -- stepping --------------------------------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, int, int]:
        w, h = self.config.resolution
        return (h, w, 3)

    def reset(self, seed: int) -> Observation:
        """Start a new episode with this seed; returns the first observation (step 0)."""
        if self._game is None:
            self._start()
        self._game.set_seed(int(seed) % (2**32))
        self._game.new_episode()
        if self.config.map_spec.console:
            for command in self.config.map_spec.console:
                self._game.send_game_command(command)
            self._game.make_action(self._table[0], 1)  # one tic so the commands take effect before frame 0
        self._step = 0
        obs = self._observe()
        if obs is None:
            raise GameError(f"map '{self.config.map}' ended before its first frame")
        self._last = obs
        return obs

    def step(self, action: int) -> Observation:
        """Hold the buttons of `action` (index into DOOM_ACTIONS) for `tics_per_step` tics."""
        if self._last is None:
            raise GameError("call reset(seed) before step()")
        if not 0 <= int(action) < len(self._table):
            raise ValueError(f"action index {action} is outside 0..{len(self._table) - 1}")
        if self._last.done:
            return self._last
        self._game.make_action(self._table[int(action)], self.config.tics_per_step)
        self._step += 1
        obs = self._observe()
        if obs is None:  # the episode ended: repeat the last frame and pose, flagged done
            obs = Observation(self._last.frame, self._last.pose, True, self._step, self._last.depth,
                              self._last.camera)
        self._last = obs
        return obs

    def _observe(self) -> Observation | None:
        g = self._game
        if g.is_episode_finished():
            return None
        state = g.get_state()
        if state is None:
            return None
        frame = area_average(state.screen_buffer, self._k)
        variables = np.asarray(state.game_variables, dtype=np.float64)
        pose, camera = variables[:3], variables[3:7]
        depth = None
        if self.config.depth:
            c = self._k // 2
            depth = np.ascontiguousarray(state.depth_buffer[c::self._k, c::self._k])
        return Observation(frame, pose, bool(g.is_player_dead()), self._step, depth, camera)
