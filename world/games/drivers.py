"""Exploration drivers: scripted players that drive the real game to make training and evaluation rollouts.

(Not to be confused with the memory policies of `memory/`, which decide what the model's KV cache keeps.)

A driver sees each `Observation` (frame, pose, done, step) and returns an action index into
`world.actions.DOOM_ACTIONS`. Drivers are seeded (their own `numpy.random.Generator`), so a seed gives the
same choices for the same observations, and the game is deterministic, so (map, seed, driver, steps)
fixes a rollout. They are registered by name in `DRIVERS`; `make_driver(name, seed=..., **options)`.

- `random`: random actions held for several frames (persistence), biased to moving forward.
- `wander`: walks forward with gentle curves; when the pose stops changing (a wall), turns about 90
  degrees (the same way again if blocked again right after).
- `go-and-return`: repeated loops: walk out, turn around, walk back to the start point (closed loop on the
  pose, so it lands within a few map units of it) and turn to the start heading, so the last frame of a
  loop revisits the first. Each finished loop is listed in `driver.loops`.
- `actions`: plays back a list of action names (an action file).

Rollout convention (shared with `engine.rollout`): row t holds the frame produced by action t; row 0 is
the reset frame and its action has no effect. So `driver.act` is not called for row 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from reverie.world.action_files import load_action_file, parse_actions
from reverie.world.actions import DOOM_ACTIONS, NOOP

A = DOOM_ACTIONS.index
FORWARD, TURN_LEFT, TURN_RIGHT = A("forward"), A("turn_left"), A("turn_right")
FWD_LEFT, FWD_RIGHT = A("forward+turn_left"), A("forward+turn_right")
TURN_DEG_PER_TIC = 3.515625  # ViZDoom's keyboard turn rate (640/65536 of a circle per tic)
FRICTION = 0.90625           # Doom's per-tic momentum decay on normal floors


def wrap_deg(a: float) -> float:
    """Angle difference in degrees, wrapped to [-180, 180)."""
    return (a + 180.0) % 360.0 - 180.0


class Driver(ABC):
    """Chooses one action per step from the observation. Subclasses keep their own seeded generator."""

    name: str = "driver"
    #: Whether the driver looks at `obs.depth` (the recorder then turns the game's depth map on).
    needs_depth: bool = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    def reset(self, obs) -> None:
        """Called with the reset observation (row 0) before the first `act`."""

    @abstractmethod
    def act(self, obs) -> int:
        """Action index for the next step, given the latest observation."""

    def describe(self) -> dict:
        """JSON-able description stored in a rollout's config."""
        return {"name": self.name, "seed": self.seed}


class RandomDriver(Driver):
    """Random actions held for `hold_min..hold_max` steps; forward-moving actions weighted `forward_bias`x."""

    name = "random"

    def __init__(self, seed: int = 0, hold_min: int = 4, hold_max: int = 16, forward_bias: float = 3.0) -> None:
        super().__init__(seed)
        if not 1 <= hold_min <= hold_max:
            raise ValueError("need 1 <= hold_min <= hold_max")
        self.hold_min, self.hold_max = hold_min, hold_max
        w = np.array([forward_bias if "forward" in n else 1.0 for n in DOOM_ACTIONS.names])
        self.weights = w / w.sum()
        self._current, self._left = 0, 0

    def act(self, obs) -> int:
        if self._left <= 0:
            self._current = int(self.rng.choice(len(self.weights), p=self.weights))
            self._left = int(self.rng.integers(self.hold_min, self.hold_max + 1))
        self._left -= 1
        return self._current

    def describe(self) -> dict:
        return {**super().describe(), "hold": [self.hold_min, self.hold_max]}


class WanderDriver(Driver):
    """Walks forward, curving now and then; turns away from walls.

    A wall is detected from the pose: less than `min_speed` map units of progress per step for
    `stuck_steps` steps while walking. It then turns about 90 degrees and walks on; if it is blocked again
    soon after a turn it keeps turning the same way (so dead ends and corners are left in two turns), else
    it picks the next turn direction at random.
    """

    name = "wander"

    def __init__(self, seed: int = 0, stuck_steps: int = 3, min_speed: float = 1.0,
                 curve_prob: float = 0.03, turn_prob: float = 0.008) -> None:
        super().__init__(seed)
        self.stuck_steps, self.min_speed = stuck_steps, min_speed
        self.curve_prob, self.turn_prob = curve_prob, turn_prob
        self._prev = None
        self._slow = 0
        self._plan: list[int] = []
        self._since_turn = 10**9
        self._side = TURN_LEFT

    def reset(self, obs) -> None:
        self._prev, self._slow, self._plan, self._since_turn = obs.pose.copy(), 0, [], 10**9

    def _turn(self, degrees: float, side: int) -> list[int]:
        return [side] * max(int(degrees / TURN_DEG_PER_TIC), 1)

    def act(self, obs) -> int:
        moved = float(np.hypot(*(obs.pose[:2] - self._prev[:2])))
        self._prev = obs.pose.copy()
        self._slow = self._slow + 1 if moved < self.min_speed else 0
        self._since_turn += 1
        if self._slow >= self.stuck_steps and not self._plan:
            if self._since_turn > 12:  # a new obstacle: choose a side; blocked again soon: same side
                self._side = TURN_LEFT if self.rng.random() < 0.5 else TURN_RIGHT
            self._plan = self._turn(self.rng.uniform(75, 105), self._side)
            self._slow = -len(self._plan) - 4  # time to speed up again after the turn
            self._since_turn = -len(self._plan)
        if not self._plan:
            r = self.rng.random()
            if r < self.curve_prob:
                self._plan = [FWD_LEFT if self.rng.random() < 0.5 else FWD_RIGHT] * int(self.rng.integers(4, 20))
            elif r < self.curve_prob + self.turn_prob:
                side = TURN_LEFT if self.rng.random() < 0.5 else TURN_RIGHT
                self._plan = self._turn(self.rng.uniform(30, 120), side)
            else:
                return FORWARD
        return self._plan.pop(0)


class GoAndReturnDriver(Driver):
    """Loops of: walk out `out_min..out_max` steps, turn around, walk back to the start point, face the
    start heading, pause. Steering on the way back aims at the start point and stops pressing forward
    when the remaining momentum will carry the player there. `loops` lists finished loops as dicts with
    `start_step`, `end_step`, `start_pose`, `end_pose`.

    With a depth map (`obs.depth`), each loop first turns (a random way) until the view ahead is open,
    and the walk out stops before a wall; without one, the first loop leaves along the initial heading
    and later loops turn to a random heading first.
    """

    name = "go-and-return"
    needs_depth = True
    OPEN_DEPTH = 6   # depth units ahead that count as open space
    NEAR_DEPTH = 2   # stop walking out this close to a wall

    def __init__(self, seed: int = 0, out_min: int = 14, out_max: int = 26, pause: int = 4,
                 arrive_tol: float = 2.0, face_tol: float = TURN_DEG_PER_TIC / 2 + 0.01, tics_per_step: int = 1) -> None:
        super().__init__(seed)
        if not 1 <= out_min <= out_max:
            raise ValueError("need 1 <= out_min <= out_max")
        if tics_per_step < 1:
            raise ValueError("tics_per_step must be >= 1")
        self.out_min, self.out_max, self.pause, self.tics = out_min, out_max, pause, tics_per_step
        self.arrive_tol, self.face_tol = arrive_tol, face_tol
        self.loops: list[dict] = []

    def reset(self, obs) -> None:
        self.loops = []
        self._prev = obs.pose.copy()
        self._begin_loop(obs, first=True)

    @staticmethod
    def _ahead(obs) -> float | None:
        """Depth straight ahead (a low percentile over the centre of the view), or None without depth."""
        d = getattr(obs, "depth", None)
        if d is None:
            return None
        h, w = d.shape
        return float(np.percentile(d[h // 2 - h // 8: h // 2 + h // 8 + 1, w // 2 - w // 8: w // 2 + w // 8 + 1], 20))

    def _begin_loop(self, obs, first: bool) -> None:
        ahead = self._ahead(obs)
        if ahead is not None:  # scan for open space unless it is already ahead
            self._aim = None
            self._scan_side = TURN_LEFT if self.rng.random() < 0.5 else TURN_RIGHT
            self._scan_left = int(360 / TURN_DEG_PER_TIC) + 1
            self._phase = "out" if (first and ahead >= self.OPEN_DEPTH) else "scan"
        else:
            self._aim = None if first else float((obs.pose[2] + self.rng.uniform(60, 300)) % 360)
            self._phase = "out" if first else "aim"
        self._start = obs.pose.copy()
        self._start_step = obs.step
        self._out_left = int(self.rng.integers(self.out_min, self.out_max + 1))
        self._walked = 0
        self._wait = 0
        self._retries = 0

    def _turn_toward(self, angle: float, target: float) -> int:
        return TURN_LEFT if wrap_deg(target - angle) > 0 else TURN_RIGHT

    def act(self, obs) -> int:
        pose = obs.pose
        speed = float(np.hypot(*(pose[:2] - self._prev[:2])))
        self._prev = pose.copy()
        handler: Callable[[np.ndarray, float, object], int] = getattr(self, f"_phase_{self._phase.replace('-', '_')}")
        return handler(pose, speed, obs)

    def _phase_aim(self, pose, speed, obs) -> int:
        if abs(wrap_deg(self._aim - pose[2])) > self.face_tol:
            return self._turn_toward(pose[2], self._aim)
        # the loop starts once aimed and still
        if speed > 0.05:
            return DOOM_ACTIONS.index(NOOP)
        self._start, self._start_step, self._phase = pose.copy(), obs.step, "out"
        return self._phase_out(pose, speed, obs)

    def _phase_scan(self, pose, speed, obs) -> int:
        if self._ahead(obs) < self.OPEN_DEPTH and self._scan_left > 0:
            self._scan_left -= 1
            return self._scan_side
        self._aim = float(pose[2])
        self._phase = "aim"
        return self._phase_aim(pose, speed, obs)

    def _phase_out(self, pose, speed, obs) -> int:
        blocked = self._walked >= 6 and speed < 0.5  # walking into a wall: come back from here
        ahead = self._ahead(obs)
        if ahead is not None and ahead <= self.NEAR_DEPTH and self._walked >= 1:
            blocked = True
        if self._out_left > 0 and not blocked:
            self._out_left -= 1
            self._walked += 1
            return FORWARD
        self._phase = "turn"
        return self._phase_turn(pose, speed, obs)

    def _bearing_home(self, pose) -> tuple[float, float]:
        dx, dy = self._start[0] - pose[0], self._start[1] - pose[1]
        return math.hypot(dx, dy), math.degrees(math.atan2(dy, dx)) % 360

    def _phase_turn(self, pose, speed, obs) -> int:
        dist, bearing = self._bearing_home(pose)
        if dist > self.arrive_tol and abs(wrap_deg(bearing - pose[2])) > max(4.0, self.face_tol):
            return self._turn_toward(pose[2], bearing)
        self._phase = "back"
        return self._phase_back(pose, speed, obs)

    def _phase_back(self, pose, speed, obs) -> int:
        dist, bearing = self._bearing_home(pose)
        coast = speed / self.tics * FRICTION / (1.0 - FRICTION)  # distance the momentum still carries us
        if dist - coast > self.arrive_tol:
            err = wrap_deg(bearing - pose[2])
            if abs(err) > 30.0:
                return self._turn_toward(pose[2], bearing)
            if abs(err) > max(2.0, self.face_tol):  # within half a turn step, steering would only oscillate
                return FWD_LEFT if err > 0 else FWD_RIGHT
            return FORWARD
        self._phase = "face"
        return self._phase_face(pose, speed, obs)

    def _phase_face(self, pose, speed, obs) -> int:
        if abs(wrap_deg(self._start[2] - pose[2])) > self.face_tol:
            return self._turn_toward(pose[2], self._start[2])
        if speed > 0.05 or self._wait < self.pause:
            self._wait += 1
            return DOOM_ACTIONS.index(NOOP)
        dist, _ = self._bearing_home(pose)
        if dist > 3 * self.arrive_tol and self._retries < 2:  # stopped short or overshot: approach again
            self._retries += 1
            self._wait = 0
            self._phase = "turn"
            return self._phase_turn(pose, speed, obs)
        self.loops.append({"start_step": int(self._start_step), "end_step": int(obs.step),
                           "start_pose": [float(v) for v in self._start],
                           "end_pose": [float(v) for v in pose]})
        self._begin_loop(obs, first=False)
        return self.act_after_loop(obs)

    def act_after_loop(self, obs) -> int:
        handler = getattr(self, f"_phase_{self._phase}")
        return handler(obs.pose, 0.0, obs)

    def describe(self) -> dict:
        return {**super().describe(), "out": [self.out_min, self.out_max], "loops": self.loops}


class ActionFileDriver(Driver):
    """Plays back action names (row 0's name is recorded with the reset frame and has no effect).

    `actions`: a list of names or indices, or `path`: a JSON file holding a list of action names.
    """

    name = "actions"

    def __init__(self, seed: int = 0, actions: list | None = None, path: str | Path | None = None) -> None:
        super().__init__(seed)
        if (actions is None) == (path is None):
            raise ValueError("give exactly one of actions= or path=")
        self.path = str(path) if path is not None else None
        self.actions = load_action_file(path) if path is not None else parse_actions(actions)
        self._next = 1

    def __len__(self) -> int:
        return len(self.actions)

    def reset(self, obs) -> None:
        self._next = 1

    def act(self, obs) -> int:
        if self._next >= len(self.actions):
            raise IndexError(f"the action list has only {len(self.actions)} steps")
        a = self.actions[self._next]
        self._next += 1
        return a

    def describe(self) -> dict:
        return {**super().describe(), "path": self.path, "steps": len(self.actions)}


@dataclass(frozen=True)
class DriverEntry:
    factory: Callable[..., Driver]
    help: str


DRIVERS: dict[str, DriverEntry] = {
    "random": DriverEntry(RandomDriver, "random actions held several frames"),
    "wander": DriverEntry(WanderDriver, "walk forward, turn away from walls"),
    "go-and-return": DriverEntry(GoAndReturnDriver, "walk out, turn around, walk back to the start"),
    "actions": DriverEntry(ActionFileDriver, "play back an action file (JSON list of names)"),
}


def make_driver(name: str, seed: int = 0, **options) -> Driver:
    """Build the registered driver `name` with its own seed and options."""
    try:
        entry = DRIVERS[name]
    except KeyError:
        raise ValueError(f"unknown driver '{name}'; choose from {', '.join(DRIVERS)}") from None
    return entry.factory(seed=seed, **options)


def driver_options(driver: str, tics_per_step: int) -> dict:
    """Options that keep a driver's turn and arrival tolerances sensible when one step is several game tics."""
    if driver != "go-and-return" or tics_per_step == 1:
        return {}
    return {"face_tol": tics_per_step * TURN_DEG_PER_TIC / 2 + 0.01, "arrive_tol": 4.0 * tics_per_step,
            "tics_per_step": tics_per_step}
