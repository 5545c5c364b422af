"""`reverie play`: the embedded default neural game (local server + pygame client)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="registered world model name")


def run(args: argparse.Namespace) -> int:
    # The play loop lands with the engine/client issue and the trained default model; until both exist
    # there are no real frames to show, and we say so instead of showing fake ones.
    print(
        "reverie play: this version does not bundle a trained default model yet, so there is nothing to "
        "play. Until it lands, `reverie record` and `reverie inspect` work on the real game (Doom).",
        file=sys.stderr,
    )
    return 2
