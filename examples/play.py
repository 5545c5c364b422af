"""Play, record and replay a neural game from Python.

    python examples/play.py                      # the game window (same as `reverie play`)
    python examples/play.py --bot                # headless: a bot plays and records; the recording is
                                                 # read back and regenerated from its actions
    python examples/play.py --screenshot docs/client.png   # a scripted walk, real game | neural game + HUD

Add `--tiny` to use a small random-weight model (runs anywhere, shows noise, not Doom).
The server is a separate process (`reverie serve`); this script is only a client and never imports torch
unless it regenerates a recording.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reverie.engine.commands.play import free_port, start_server, stop_server  # noqa: E402


def scripted_keys(i: int) -> set[str]:
    """Walk forward, turning right now and then (held keys, as a player would hold them)."""
    return {"w", "d"} if (i // 20) % 4 == 3 else {"w"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bot", action="store_true", help="headless bot play + recording + regeneration")
    parser.add_argument("--screenshot", default=None, help="save a side-by-side screenshot with the HUD here")
    parser.add_argument("--tiny", action="store_true", help="a tiny random-weight model instead of the default")
    parser.add_argument("--model-kwargs", default=None, metavar="JSON",
                        help='arguments for the default model, e.g. \'{"checkpoint": "runs/x/last.safetensors"}\'')
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    kwargs = args.model_kwargs or json.dumps({"pretrained": False, "config": "tiny"} if args.tiny else {})
    if not args.bot and not args.screenshot:
        from reverie.engine.cli import main as reverie

        return reverie(["play", "--model-kwargs", kwargs])

    record_dir = tempfile.mkdtemp(prefix="reverie-example-")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc, code = start_server("default", kwargs, endpoint, ["--record-dir", record_dir])
    if code is not None:
        return 2  # the server said why (e.g. no trained default model in this install)
    try:
        if args.screenshot:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # render off-screen
            from reverie.input.app import ClientConfig, GameClient

            # rate "max": the scripted walk is timed in loop ticks and the documented screenshot was taken
            # with frames asked for as fast as they come (played by hand, `reverie play` keeps game speed)
            client = GameClient(ClientConfig(endpoint=endpoint, side_by_side=True, max_frames=args.frames,
                                             screenshot=args.screenshot, rate="max"), extra_keys=scripted_keys)
            summary = client.run()
            print(f"saved {args.screenshot} after {summary['frames']} frames")
            return 0
        from reverie.input.bot import PATROL, load_actions, run_bot
        from reverie.input.net import Connection

        with Connection(endpoint, record=True, seed=1) as conn:  # record from the first frame
            stats = run_bot(conn, args.frames, load_actions(PATROL), warmup=5)
        print(f"bot: {stats['fps']:.1f} fps, key-to-frame latency p50 {stats['latency_p50_ms']:.0f} ms, "
              f"p95 {stats['latency_p95_ms']:.0f} ms")
    finally:
        stop_server(proc)  # SIGTERM: recordings are finished before it exits

    from reverie.engine.rollout import read_rollout

    (path,) = Path(record_dir).iterdir()
    rollout = read_rollout(path)
    print(f"recorded {len(rollout)} steps to {path} (row 0 is the seed frame); preview: {path / 'preview.mp4'}")
    print(f"replay it in the window with:  reverie replay {path}")

    from reverie.engine.commands.serve import load_world
    from reverie.engine.replay import regenerate

    frames = regenerate(rollout, load_world("default", json.loads(kwargs)))
    same = bool((frames == rollout.frames[1:]).all())
    print(f"regenerated from its actions with the same seed: {'identical' if same else 'DIFFERENT'} frames")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
