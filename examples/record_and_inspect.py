"""Record a short go-and-return rollout of the real game, then load and check it.

    python examples/record_and_inspect.py [OUT_DIR]

The same through the command line:
    reverie record --game doom --map maze --driver go-and-return --steps 200 --out OUT_DIR
    reverie inspect OUT_DIR --json
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

from reverie.engine.rollout import read_rollout
from reverie.engine.rollout.game import record_episode
from reverie.world.games.doom import DoomConfig, DoomGame
from reverie.world.games.drivers import make_driver


def main(out: Path) -> None:
    with DoomGame(DoomConfig(map="maze", resolution=(64, 48))) as game:
        driver = make_driver("go-and-return", seed=0)
        result = record_episode(game, driver, seed=0, steps=200, out_dir=out)
    print(f"recorded {result.steps} steps to {out} ({result.steps / result.record_s:.0f} steps/s)")

    rollout = read_rollout(out)  # validates everything; raises RolloutError if anything is off
    print(f"frames {rollout.frames.shape} {rollout.frames.dtype}, sha256 {rollout.frames_sha256[:16]}...")
    print(f"first actions: {rollout.action_names[:5]}")
    loop = driver.loops[0]
    start, end = rollout.poses[loop["start_step"]], rollout.poses[loop["end_step"]]
    print(f"go-and-return loop: steps {loop['start_step']}..{loop['end_step']}, "
          f"back within {np.hypot(*(end[:2] - start[:2])):.1f} map units of the start")
    print(f"preview: {out / 'preview.mp4'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="reverie-")) / "rollout")
