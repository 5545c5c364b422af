"""A headless bot client: plays a script of actions against a server, as fast as its credits allow.

The script is a list of action names or indices (a JSON file of names, like the real game's action files,
or a built-in pattern) played in a loop. A frame counts as shown when it is received (no display), so the
measured latency is the action-send to frame-arrival time the pygame client adds its blit and flip to.
Used by the tests and by `reverie bench play`; `python -m input.bot --endpoint ... --frames N --json`
runs it as its own process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from reverie.input.net import Connection
from reverie.world.action_files import parse_actions, read_json
from reverie.world.actions import DOOM_ACTIONS, ActionSpace

#: walk forward, turn, strafe, back: every control pressed, chords included
PATROL = (["forward"] * 8 + ["forward+turn_left"] * 6 + ["turn_right"] * 4 + ["strafe_left"] * 4
          + ["back+strafe_right"] * 4 + ["forward+turn_right"] * 6 + ["noop"] * 2)


def load_actions(source: str | Path | list | None) -> list | None:
    """Action items (names, indices, maps, vectors: checked against the model's space when played) from a
    JSON action file or a list; None stays None (the bot then plays `patrol(space)`)."""
    if source is None or isinstance(source, (list, tuple)):
        return None if source is None else list(source)
    items = read_json(source, "action file")
    if not isinstance(items, list) or not items:
        raise ValueError(f"the action file {source} must hold a non-empty JSON list of actions")
    return items


def patrol(space: ActionSpace) -> list:
    """The default script: `PATROL` for Doom's space; for another, each button held 4 frames in turn, with
    every axis swept through its range."""
    if space == DOOM_ACTIONS:
        return parse_actions(PATROL, space)
    script = [space.from_controls([b]) for b in space.buttons for _ in range(4)]
    for axis in space.axes:
        script += [space.from_controls((), {axis.name: axis.low + (axis.high - axis.low) * i / 7}) for i in range(8)]
    return script + [space.noop] * 2


def run_bot(conn: Connection, frames: int, actions: list | None, *, warmup: int = 0,
            timeout_s: float = 120.0, on_frame=None, scene_every: int = 0, scene_handling: str | None = None) -> dict:
    """Play `warmup + frames` frames of `actions` (items of an action file, looped; None: `patrol`);
    statistics cover the last `frames` only. Raises ValueError for an action the model does not have.
    `scene_every`: after every that many frames received, ask for a new scene at the server's next place
    (handled as `scene_handling`; None: the memory policy's choice).

    Returns a dict: `frames`, `fps`, `latency_p50_ms`, `latency_p95_ms`, `lost`, `errors`, `scenes`.
    """
    space = conn.action_space
    actions = patrol(space) if actions is None else parse_actions(actions, space)
    total = warmup + frames
    received = 0
    deadline = time.monotonic() + timeout_s
    t0, base = (time.monotonic(), 0) if warmup == 0 else (None, 0)
    scenes = 0
    while received < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bot got {received} of {total} frames in {timeout_s:.0f} s")
        if conn.closed_reason is not None:
            raise ConnectionError(f"the server closed the session: {conn.closed_reason}")
        while conn.can_send():
            conn.send_action(actions[conn.seq % len(actions)])
        before = conn.frames_received
        newest = conn.poll(50)
        if newest is None:
            continue
        received += conn.frames_received - before
        conn.mark_shown(newest)
        if scene_every > 0 and received < total and received // scene_every > scenes:
            conn.scene(handling=scene_handling)
            scenes += 1
        if on_frame is not None:
            on_frame(newest)
        if t0 is None and received >= warmup:
            t0, base = time.monotonic(), received  # measure from the first frame after the warm-up
            conn.latency.samples.clear()
    elapsed = time.monotonic() - t0
    measured = received - base
    return {"frames": measured, "fps": measured / elapsed if elapsed > 0 else 0.0,
            "latency_p50_ms": conn.latency.p(50), "latency_p95_ms": conn.latency.p(95),
            "lost": conn.lost, "errors": [str(e) for e in conn.errors], "scenes": scenes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m input.bot", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--actions", help="JSON file with a list of action names (default: a patrol script)")
    parser.add_argument("--credits", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="ask the server to record the session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene-every", type=int, default=0, metavar="N",
                        help="ask for a new scene (the server's next place) after every N frames (0: never)")
    parser.add_argument("--scene-handling", choices=("flush", "cut", "recache"), default=None,
                        help="what a new scene does to the memory (default: the memory policy's choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with Connection(args.endpoint, credits=args.credits, record=args.record, seed=args.seed, client="reverie-bot") as conn:
        result = run_bot(conn, args.frames, load_actions(args.actions), warmup=args.warmup,
                         scene_every=args.scene_every, scene_handling=args.scene_handling)
    print(f"{result['frames']} frames, {result['fps']:.1f} fps, latency p50 {result['latency_p50_ms']:.1f} ms "
          f"p95 {result['latency_p95_ms']:.1f} ms")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
