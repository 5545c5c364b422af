"""Training data for the default model: episodes of the real game and the windows sampled from them.

An `Episode` is aligned the way rollouts are: `actions[t]` is the action that produced `frames[t]`
(`actions[0]` is `noop` for the reset frame), which is exactly the per-frame conditioning the model uses.

A training window is `window` consecutive frames; a *revisit* window also carries up to `revisit_frames`
far-earlier frames of the same episode taken near the same place and heading (pose within
`revisit_max_dist` map units and `revisit_max_angle` degrees of the window's last frame, at least
`revisit_min_gap` steps earlier), so the model learns to use frames that spatial retrieval brings back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reverie.world.dit.config import TrainConfig


@dataclass(frozen=True)
class Episode:
    """frames uint8 `[T, H, W, 3]`, actions int64 `[T]`, poses float64 `[T, 3]` (x, y, angle degrees);
    from the real game also depth uint8 `[T, H, W]` (when asked for) and camera float64 `[T, 4]` (the eye's
    x, y, z, angle; see `world.games.doom.Observation`)."""

    frames: np.ndarray
    actions: np.ndarray
    poses: np.ndarray
    name: str = ""
    depth: np.ndarray | None = None
    camera: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(f"{self.name}: frames must be uint8 [T, H, W, 3], got {self.frames.dtype} {self.frames.shape}")
        if len(self.actions) != n or len(self.poses) != n:
            raise ValueError(f"{self.name}: {n} frames but {len(self.actions)} actions and {len(self.poses)} poses")

    def __len__(self) -> int:
        return len(self.frames)


def pose_deltas(poses: np.ndarray) -> np.ndarray:
    """Per-step motion in the previous frame's heading: `[T, 3]` = (forward, left, dangle in degrees).

    Row 0 is zero (no previous frame). Angles are wrapped to [-180, 180).
    """
    from reverie.world.pose import egocentric_motion

    out = np.zeros((len(poses), 3), dtype=np.float32)
    if len(poses) >= 2:
        out[1:] = egocentric_motion(poses[:-1], poses[1:])
    return out


def load_episode(path: str | Path) -> Episode:
    """Read a rollout directory (see `engine.rollout`) recorded from the real game."""
    from reverie.engine.rollout import read_rollout

    r = read_rollout(path)
    poses = np.asarray([p if p is not None else (np.nan, np.nan, np.nan) for p in r.poses], dtype=np.float64)
    return Episode(np.asarray(r.frames), np.asarray(r.actions, dtype=np.int64), poses, name=str(path))


def find_rollouts(paths: list[str | Path]) -> list[Path]:
    """Rollout directories under `paths` (a path that holds `meta.json` is itself a rollout)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "meta.json").is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(d.parent for d in p.rglob("meta.json")))
        else:
            raise FileNotFoundError(f"no rollout at {p}")
    if not found:
        raise FileNotFoundError(f"no rollouts found under {[str(p) for p in paths]}")
    return found


def play_episode(map_name: str, driver: str, steps: int, seed: int, tics_per_step: int,
                 resolution: tuple[int, int] = (64, 48), actions: list[int] | None = None,
                 options: dict | None = None, depth: bool = False) -> Episode:
    """Run the real game for `steps` steps (an exploration driver, or a fixed action list) and return the episode
    (with the game's depth buffer when `depth`; the eye positions always)."""
    from reverie.world.games.doom import DoomConfig, DoomGame
    from reverie.world.games.drivers import make_driver
    from reverie.world.games.episode import run_episode

    cfg = DoomConfig(map=map_name, resolution=resolution, tics_per_step=tics_per_step, depth=depth)
    drv = (make_driver(driver, seed=seed, **(options or {})) if actions is None
           else make_driver("actions", seed=seed, actions=list(actions)))
    with DoomGame(cfg) as game:
        acts, observed = zip(*run_episode(game, drv, seed=seed, steps=steps))
    return Episode(np.stack([o.frame for o in observed]), np.asarray(acts, dtype=np.int64),
                   np.stack([o.pose for o in observed]), name=f"{map_name}/{driver}/seed{seed}",
                   depth=np.stack([o.depth for o in observed]) if depth else None,
                   camera=np.stack([o.camera for o in observed]))


class WindowSampler:
    """Draws training windows (with revisit frames) from episodes, reproducibly from a numpy Generator.

    `sample(rng, batch)` returns numpy arrays:
        frames uint8 `[B, R + W, H, W, 3]` (R revisit slots first), actions int64 `[B, R + W]`,
        pos int64 `[B, R + W]` (frame index in the episode), revisit_valid bool `[B, R]`,
        deltas float32 `[B, R + W, 3]` (pose deltas, see `pose_deltas`),
        prev_frames uint8 like frames (each frame's predecessor in the episode) and has_prev bool
        `[B, R + W]` (false for an episode's first frame and empty revisit slots).
    """

    def __init__(self, episodes: list[Episode], cfg: TrainConfig):
        self.cfg = cfg
        self.episodes = [e for e in episodes if len(e) >= cfg.window]
        if not self.episodes:
            raise ValueError(f"no episode has at least {cfg.window} frames")
        lengths = np.asarray([len(e) - cfg.window + 1 for e in self.episodes], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.deltas = [pose_deltas(e.poses) for e in self.episodes]

    def _revisits(self, rng: np.random.Generator, ep: Episode, start: int) -> np.ndarray:
        cfg = self.cfg
        last = start + cfg.window - 1
        earlier = start - cfg.revisit_min_gap
        if earlier <= 0:
            return np.zeros(0, dtype=np.int64)
        p = ep.poses[:earlier]
        target = ep.poses[last]
        dist = np.hypot(p[:, 0] - target[0], p[:, 1] - target[1])
        dang = np.abs((p[:, 2] - target[2] + 180.0) % 360.0 - 180.0)
        cand = np.flatnonzero((dist < cfg.revisit_max_dist) & (dang < cfg.revisit_max_angle))
        if len(cand) == 0:
            return cand
        k = min(cfg.revisit_frames, len(cand))
        if cfg.revisit_nearest:
            closeness = dist[cand] / cfg.revisit_max_dist + dang[cand] / cfg.revisit_max_angle
            return np.sort(cand[np.argsort(closeness, kind="stable")[:k]])
        pick = rng.choice(cand, size=k, replace=False)
        return np.sort(pick)

    def sample(self, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
        cfg = self.cfg
        r, w = cfg.revisit_frames, cfg.window
        h, wd = self.episodes[0].frames.shape[1:3]
        frames = np.zeros((batch, r + w, h, wd, 3), dtype=np.uint8)
        actions = np.zeros((batch, r + w), dtype=np.int64)
        pos = np.zeros((batch, r + w), dtype=np.int64)
        valid = np.zeros((batch, r), dtype=bool)
        deltas = np.zeros((batch, r + w, 3), dtype=np.float32)
        prev = np.zeros_like(frames)
        has_prev = np.zeros((batch, r + w), dtype=bool)
        for b in range(batch):
            e = int(rng.choice(len(self.episodes), p=self.weights))
            ep = self.episodes[e]
            start = int(rng.integers(0, len(ep) - w + 1))
            idx = np.arange(start, start + w)
            rev = self._revisits(rng, ep, start) if r and rng.random() < cfg.revisit_prob else np.zeros(0, np.int64)
            idx = np.concatenate((np.zeros(r - len(rev), np.int64), rev, idx))
            valid[b, r - len(rev):] = True
            frames[b] = ep.frames[idx]
            actions[b] = ep.actions[idx]
            pos[b] = idx
            deltas[b] = self.deltas[e][idx]
            has_prev[b] = idx > 0
            has_prev[b, :r - len(rev)] = False
            prev[b] = ep.frames[np.maximum(idx - 1, 0)]
        return {"frames": frames, "actions": actions, "pos": pos, "revisit_valid": valid, "deltas": deltas,
                "prev_frames": prev, "has_prev": has_prev}


def generate_episodes(cfg: TrainConfig, seed: int, progress: bool = True, workers: int = 1) -> list[Episode]:
    """The data recipe of `cfg`: seeded real-game episodes on the train maps (never an eval map).

    `workers > 1` records them in that many processes (one game each); every episode has its own seed, so
    the episodes, and their order, are the same for any number of workers."""
    from tqdm import tqdm

    from reverie.world.games.maps import get_map

    jobs = []
    for m, map_name in enumerate(cfg.maps):
        if get_map(map_name).role != "train":
            raise ValueError(f"map '{map_name}' is held out for evaluation; train only on train maps")
        for d, driver in enumerate(cfg.drivers):
            for k in range(cfg.episodes_per):
                jobs.append((map_name, driver, 1_000_003 * seed + 10_007 * m + 101 * d + k, cfg.episode_steps,
                             cfg.tics_per_step))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) < 2:  # no pool to start for one job (or none)
        return [_record(job) for job in tqdm(jobs, desc="record", disable=not progress)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(tqdm(pool.map(_record, jobs), total=len(jobs), desc="record", disable=not progress))


def _record(job: tuple[str, str, int, int, int]) -> Episode:
    """One recording job of `generate_episodes` (module level, so worker processes can run it)."""
    from reverie.world.games.drivers import driver_options

    map_name, driver, seed, steps, tics = job
    return play_episode(map_name, driver, steps, seed, tics, options=driver_options(driver, tics))
