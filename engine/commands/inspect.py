"""`reverie inspect DIR [--json]`: validate one rollout directory and summarise it.

Exit status 0 for a complete rollout, 0 with status "partial" for the readable prefix of an unfinished
recording, 1 with a message on stderr for a missing, truncated or corrupt rollout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="a rollout directory (one episode)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object, last line")
    parser.add_argument("--no-verify", action="store_true", help="skip checking the frames' sha256")


def _human(summary: dict, rollout) -> str:
    import numpy as np

    lines = [f"rollout    {summary['path']}  ({summary['status']})",
             f"source     {summary['source']}   map {summary['map']}   seed {summary['seed']}   fps {summary['fps']:g}",
             f"steps      {summary['steps']}   frame {tuple(summary['frame_shape'])} uint8",
             f"frames     sha256 {summary['frames_sha256']}",
             f"preview    {'preview.mp4' if summary['preview'] else '(none)'}"]
    if len(rollout):
        poses = rollout.poses
        if np.isfinite(poses).all():
            first, last = poses[0], poses[-1]
            lines.append(f"pose       start ({first[0]:.1f}, {first[1]:.1f}, {first[2]:.1f} deg)  "
                         f"end ({last[0]:.1f}, {last[1]:.1f}, {last[2]:.1f} deg)  "
                         f"path {np.hypot(*np.diff(poses[:, :2], axis=0).T).sum():.0f} units")
        top = Counter(summary["actions"]).most_common(5)
        lines.append("actions    " + ", ".join(f"{n} x{c}" for n, c in top))
        if rollout.done.any():
            lines.append(f"episode    ended at step {int(np.argmax(rollout.done))}")
    from reverie.engine.rollout.game import recorded_driver

    config = summary["config"]
    driver = recorded_driver(config)  # the real game's exploration driver (under "policy" in older rollouts)
    if driver is not None:
        lines.append(f"driver     {driver.get('name')} (seed {driver.get('seed')})")
    elif config.get("policy"):  # the memory policy of an engine recording
        lines.append(f"policy     {config['policy']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from reverie.engine.rollout import RolloutError, read_rollout

    try:
        rollout = read_rollout(args.dir, mmap=True, verify=not args.no_verify)
    except RolloutError as exc:
        print(f"reverie inspect: {exc}", file=sys.stderr)
        return 1
    summary = rollout.summary()
    print(_human(summary, rollout))
    if args.json:
        print(json.dumps(summary))
    return 0
