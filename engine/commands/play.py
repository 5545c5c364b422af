"""`reverie play`: the embedded default neural game (a local server process + the pygame client).

The server runs as a child process bound to a free loopback port and is stopped (recordings closed)
when the window closes. All `reverie client` options apply.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reverie.engine.commands.client import add_client_arguments

    parser.add_argument("--model", default="default", help="registered world model name (default: %(default)s)")
    parser.add_argument("--model-kwargs", default="{}", metavar="JSON", help="keyword arguments for the model factory")
    parser.add_argument("--record-dir", default="recordings", help="where R saves recordings (default: %(default)s)")
    parser.add_argument("--serve-args", default="", help="extra arguments for the server, e.g. '--budget-frames 16'")
    add_client_arguments(parser)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, model_kwargs: str, endpoint: str, extra: list[str], timeout: float = 120.0):
    """Start `reverie serve` as a child process; wait until it serves. Returns `(process, None)`, or
    `(process, exit code)` if it stopped first (its own message, e.g. a missing model, is on stderr)."""
    import threading

    cmd = [sys.executable, "-m", "reverie.engine.cli", "serve", "--model", model, "--model-kwargs", model_kwargs,
           "--endpoint", endpoint, "--log-level", "WARNING", *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()

    def forward():
        for line in proc.stderr:
            if line.startswith("reverie serve: ") and " on tcp://" in line:
                ready.set()
            sys.stderr.write(line)
        ready.set()

    threading.Thread(target=forward, daemon=True).start()
    ready.wait(timeout)
    time.sleep(0.05)
    return proc, proc.poll()


def bench_server(args) -> tuple[str, str, str]:
    """For a bench that runs its own server process: `(model, model kwargs JSON, loopback endpoint)` from
    its `--model`, `--model-kwargs` and `--tiny` (the tiny random-weight default model), with SIGTERM turned
    into SystemExit so the bench's `finally` stops the server."""
    import json

    model, kwargs = args.model, args.model_kwargs
    if args.tiny:
        model, kwargs = "default", json.dumps({"pretrained": False, "config": "tiny"})
    exit_on_sigterm()
    return model, kwargs, f"tcp://127.0.0.1:{free_port()}"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the child server too."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def stop_server(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: the server closes its recordings, then exits
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(args: argparse.Namespace) -> int:
    import shlex

    from reverie.engine.commands.client import client_config, summary_line

    exit_on_sigterm()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc, code = start_server(args.model, args.model_kwargs, endpoint,
                              ["--record-dir", args.record_dir, *shlex.split(args.serve_args)])
    if code is not None:
        print(f"reverie play: the model '{args.model}' could not be served, so there is nothing to play "
              f"(the reason is above).", file=sys.stderr)
        return 2
    try:
        from reverie.input.app import GameClient
        from reverie.input.net import ServerError

        summary = GameClient(client_config(args, endpoint)).run()
    except (ServerError, TimeoutError, ConnectionError, RuntimeError, ValueError) as exc:
        print(f"reverie play: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_server(proc)
    print(f"reverie play: {summary_line(summary)}", file=sys.stderr)
    return 0
