"""`reverie client`: the pygame window, connected to a running `reverie serve`.

Keys (the default model's; another model declares its own, `--keymap FILE` for yours): W/S or Up/Down
forward/back, A/D or Left/Right turn, Q/E strafe; H or F1 HUD, P cycle the memory policy, R start/stop
recording, Enter reset, Space pause, F flush the memory, N a new scene (the next `--scene-image`, or the
server's next place), G grab/release the mouse (models with mouse axes), Esc quit.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="server endpoint (default: %(default)s)")
    add_client_arguments(parser)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keymap", default=None,
                        help="keymap JSON file (default: the model's declared keys and input/keymaps/default.json)")
    parser.add_argument("--mouse-sensitivity", type=float, default=1.0,
                        help="multiplies the model's mouse axes (models with mouse axes; default: %(default)s)")
    parser.add_argument("--scale", type=int, default=None, help="window pixels per model pixel (default: ~640 px wide)")
    parser.add_argument("--rate", type=_rate, default="game",
                        help="frames per second to ask for: 'game' (the default: the game's own speed, 35 tics "
                             "per second over the model's tics per frame, 8.75 for the default model), 'max' "
                             "(as fast as the server makes them) or a number")
    parser.add_argument("--credits", type=int, default=1, choices=(1, 2), help="frames in flight (1 = lowest latency)")
    parser.add_argument("--no-hud", action="store_true", help="start with the HUD hidden (H toggles it)")
    parser.add_argument("--side-by-side", action="store_true", help="play the real game next to the neural game")
    parser.add_argument("--map", default=None, help="real-game map for --side-by-side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="record from the first frame")
    parser.add_argument("--scene-image", action="append", default=[], metavar="FILE",
                        help="an image (PNG, JPEG, or a uint8 .npy of the model's frame shape) the N key starts a new "
                             "scene from; repeat for more, taken in turn (default: the server's places: other "
                             "starts of the real game's map)")
    parser.add_argument("--scene-handling", choices=("flush", "cut", "recache"), default=None,
                        help="what a new scene does to the memory (default: the memory policy's choice)")
    parser.add_argument("--policy", default="", help="memory policy (default: the server's)")
    parser.add_argument("--budget-bytes", type=int, default=0, help="KV budget (default: the server's)")
    parser.add_argument("--frames", type=int, default=None, help="quit after this many frames")
    parser.add_argument("--screenshot", default=None, help="save a PNG of the window when quitting")
    parser.add_argument("--server-key", default=None, metavar="FILE",
                        help="the server's CURVE public key (NAME.key), for a server started with --keys")
    parser.add_argument("--client-key", default=None, metavar="FILE",
                        help="this client's CURVE secret key (NAME.key_secret), for a server with --allow-clients")


def _rate(text: str):
    from reverie.input.pacing import parse_rate

    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def client_config(args: argparse.Namespace, endpoint: str):
    from reverie.input.app import ClientConfig

    return ClientConfig(endpoint=endpoint, keymap=args.keymap, credits=args.credits, scale=args.scale,
                        hud=not args.no_hud, side_by_side=args.side_by_side, map=args.map, seed=args.seed,
                        record=args.record, policy=args.policy, budget_bytes=args.budget_bytes,
                        max_frames=args.frames, screenshot=args.screenshot, rate=args.rate,
                        mouse_sensitivity=getattr(args, "mouse_sensitivity", 1.0),
                        scene_images=tuple(getattr(args, "scene_image", ())),
                        scene_handling=getattr(args, "scene_handling", None),
                        server_key=getattr(args, "server_key", None), client_key=getattr(args, "client_key", None))


def run(args: argparse.Namespace) -> int:
    from reverie.input.app import GameClient
    from reverie.input.net import ServerError

    try:
        summary = GameClient(client_config(args, args.endpoint)).run()
    except (ServerError, TimeoutError, ConnectionError, RuntimeError, ValueError) as exc:
        print(f"reverie client: {exc}", file=sys.stderr)
        return 1
    print(f"reverie client: {summary_line(summary)}", file=sys.stderr)
    return 0


def summary_line(summary: dict) -> str:
    """What a finished client run did: frames, their rate and the pace asked for, latency."""
    rate = f"{summary['rate_hz']:g}/s" if summary.get("rate_hz") else "max"
    fps = (summary["frames"] - 1) / summary["seconds"] if summary["frames"] > 1 and summary["seconds"] > 0 else 0.0
    return (f"{summary['frames']} frames at {fps:.1f} fps (rate {rate}), latency p50 {summary['latency_p50_ms']:.0f} ms "
            f"p95 {summary['latency_p95_ms']:.0f} ms")
