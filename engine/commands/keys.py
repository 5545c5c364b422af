"""`reverie keys`: make a CURVE key pair for serving beyond loopback (see `engine.curve`).

    reverie keys --out keys/                      # keys/server.key (public) + keys/server.key_secret
    reverie serve --endpoint tcp://0.0.0.0:5555 --keys keys/server.key_secret
    reverie client --endpoint tcp://HOST:5555 --server-key keys/server.key

With `--name alice` it makes a client pair; put client public keys in a folder and serve with
`--allow-clients FOLDER` to admit only those clients (each connects with `--client-key alice.key_secret`).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder for the key files (created if missing)")
    parser.add_argument("--name", default="server", help="file name stem (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from reverie.engine.curve import CurveError, make_keys

    try:
        public, secret = make_keys(args.out, args.name)
    except (CurveError, OSError) as exc:
        print(f"reverie keys: {exc}", file=sys.stderr)
        return 1
    print(f"reverie keys: public {public} (give it to clients), secret {secret} (keep it on this machine)")
    return 0
