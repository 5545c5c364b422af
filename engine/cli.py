"""The `reverie` command line.

Every subcommand lives in its own module under `engine.commands` and is imported only when it runs, so
`reverie --help` stays fast and never imports torch, pygame or vizdoom. A command module provides
`add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Modules are imported lazily.
COMMANDS: dict[str, tuple[str, str]] = {
    "play": ("reverie.engine.commands.play", "play the default neural game (local server + pygame client)"),
    "serve": ("reverie.engine.commands.serve", "serve a world model over ZeroMQ"),
    "client": ("reverie.engine.commands.client", "connect the pygame client to a server"),
    "cluster": ("reverie.engine.commands.cluster", "scale or inspect a running `reverie serve --cluster`"),
    "keys": ("reverie.engine.commands.keys", "make a CURVE key pair for serving beyond loopback"),
    "record": ("reverie.engine.commands.record", "record rollouts of the real game (Doom)"),
    "inspect": ("reverie.engine.commands.inspect", "validate and summarise a rollout directory"),
    "replay": ("reverie.engine.commands.replay", "show a recorded rollout, or regenerate it with a model"),
    "rollout": ("reverie.engine.commands.rollout", "run a model on a rollout's actions and write a rollout"),
    "train": ("reverie.engine.commands.train", "train a world model"),
    "train-salience": ("reverie.engine.commands.train_salience", "distil the learned salience head"),
    "check-model": ("reverie.engine.commands.check_model", "check that a world model keeps the engine's contract"),
    "bench": ("reverie.engine.commands.bench", "benchmarks; each prints a JSON object as its last line with --json"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reverie", description="Play, record and study neural games.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _load(name: str):
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise SystemExit(f"reverie {name}: not available in this version yet") from None
        missing = exc.name or "a dependency"
        raise SystemExit(
            f"reverie {name}: needs the Python package '{missing}', which is not installed "
            f"(see README.md for the install extras)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"reverie: unknown command '{argv[0]}' (choose from {', '.join(COMMANDS)})", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = _load(name)
    parser = argparse.ArgumentParser(prog=f"reverie {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
