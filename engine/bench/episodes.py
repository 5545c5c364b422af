"""What the memory benches and salience training play: an `Episode` of actions (real-game frames, poses
and revisits when it comes from the game, `game_episode`; seeded random actions, `random_episode`), and
`free_run`, a `Session` playing an episode's actions on a given memory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Episode:
    """`actions[i]` leads to frame `i` (`actions[0]` is unused); frames uint8 `[N, H, W, 3]` or None."""

    actions: list[int]
    frames: object = None
    poses: object = None
    revisits: list[int] = field(default_factory=list)  # frame indices back at a loop's start
    loop_gaps: list[int] = field(default_factory=list)  # frames between each loop's start and its return


def game_episode(spec, map_name: str, seed: int, steps: int, driver: str, **options) -> Episode:
    """The real game on `map_name` driven by the exploration driver `driver` (extra `options` for its
    factory), at the model's frame skip."""
    import numpy as np

    from reverie.world.games import DoomConfig, DoomGame, make_driver
    from reverie.world.games.drivers import driver_options
    from reverie.world.games.episode import run_episode

    h, w, _ = spec.frame_shape
    tics = spec.tics_per_step
    drv = make_driver(driver, seed=seed, **driver_options(driver, tics), **options)
    with DoomGame(DoomConfig(map=map_name, resolution=(w, h), depth=getattr(drv, "needs_depth", False),
                             tics_per_step=tics)) as game:
        actions, observed = zip(*run_episode(game, drv, seed=seed, steps=steps))
    revisits, gaps = [], []
    for loop in getattr(drv, "loops", []):
        end = int(loop["end_step"])
        revisits += [i for i in range(end, end + getattr(drv, "pause", 1)) if 0 < i < steps]
        if 0 < end < steps:
            gaps.append(end - int(loop["start_step"]))
    return Episode(list(actions), np.stack([o.frame for o in observed]), np.stack([o.pose for o in observed]),
                   revisits, gaps)


def random_episode(spec, seed: int, steps: int) -> Episode:
    import random

    rng = random.Random(seed)
    a = spec.action_space.noop
    actions = [a]
    while len(actions) < steps:
        if rng.random() < 0.15:
            a = spec.action_space.sample(rng)
        actions.append(a)
    return Episode(actions)


def free_run(model, memory, episode: Episode, seed: int, frames: int, pose_from: str):
    """A `Session` on `memory` (any object with the memory API: a manager, a shadow, a tap) generates
    `frames` frames on `episode.actions`, one chunk of per-frame actions at a time; the seed frame is the
    episode's first real frame, or grey. The memory retrieves by the session's dead-reckoned pose
    (`pose_from="model"`), the real game's pose of the chunk's first frame (`"game"`) or none (`"none"`).
    Returns (uint8 frames `[frames, H, W, 3]` incl. the seed frame, per-frame generation seconds
    `[frames - 1]`: each chunk's wall time spread over its frames)."""
    return free_runs(model, {None: memory}, episode, seed, frames, pose_from)[None]


def free_runs(model, memories: dict, episode: Episode, seed: int, frames: int, pose_from: str) -> dict:
    """`free_run` on each of `memories` (`{key: memory}`), stepped in lockstep: every session generates
    chunk i before any generates chunk i + 1, in an order that rotates each chunk. Timings of different
    memories are then taken under the same machine conditions, chunk by chunk (this machine's speed
    wanders by 10-30 % over minutes), and none is always first. Noise depends on (seed, chunk, step) only,
    so each rollout is the one `free_run` gives. Returns `{key: (frames, seconds)}`."""
    import numpy as np

    from reverie.engine.session import Session

    spec = model.spec
    k = spec.chunk_frames
    first = episode.frames[0] if episode.frames is not None else np.full(spec.frame_shape, 128, np.uint8)
    sessions = {key: Session(model, first, seed=seed, memory_factory=lambda *_, m=mem: m,
                             pose_source=_pose_source(episode, pose_from)) for key, mem in memories.items()}
    keys = list(sessions)
    out = {key: [first] for key in keys}
    times: dict = {key: [] for key in keys}
    i, turn = 1, 0
    while i < frames:
        actions = [episode.actions[min(i + j, len(episode.actions) - 1)] for j in range(k)]
        for key in keys[turn:] + keys[:turn]:
            t0 = time.perf_counter()
            chunk = sessions[key].generate(actions)
            times[key] += [(time.perf_counter() - t0) / k] * k
            out[key].extend(chunk.frames)
        i, turn = i + k, (turn + 1) % len(keys)
    return {key: (np.stack(out[key][:frames]), times[key][: frames - 1]) for key in keys}


def _pose_source(episode: Episode, pose_from: str):
    """`Session.pose_source` for `pose_from`: None (the session's own pose) for "model"."""
    if pose_from == "model":
        return None
    if pose_from == "game" and episode.poses is not None:
        poses = episode.poses
        return lambda t: tuple(float(v) for v in poses[min(t, len(poses) - 1)])
    return lambda t: None
