"""`reverie bench flood`: a hostile neighbour floods the server while a player plays beside it.

The bench starts `reverie serve` (127.0.0.1 only) as a child process, connects a well-behaved player that
asks for frames as fast as they come (one credit), plays `--warmup-s` seconds alone (the baseline), then
floods the server from another process, through `--sockets` loopback DEALER sockets, for `--seconds` at
`--rate` messages a second:
random bytes, malformed MessagePack, headers over the size limit, parts over the socket's message limit
(the server drops the connection; the socket reconnects under a new identity), messages without a session
or of the wrong kind, actions for no action, and hellos (plain, with random policies, budgets, seed frames
and credits; the flood never plays: a client that sends real actions is a player and gets its fair share
of the frames). Halfway
through, a new client joins and plays a few frames (retrying as told if it is rate-limited). Then the
flood stops, the flood's idle sessions are left to expire, and the server's memory is read again.

Reported: the player's longest and p99 gap between frames during the flood (and alone, before), the flood
messages sent and handled, whether and how fast the new client joined, the server process's resident
memory before, at its peak and after, against the server's total session budget, and the server's
counters. With `--json` the last line is `{"gap_max_ms", "flood_messages", "joined", "rss_before_bytes",
"rss_peak_bytes", "rss_after_bytes", "total_budget_bytes", ...}`.

Run it as `python -m reverie.engine.bench.flood` (or `reverie bench flood` where the bench is registered).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from dataclasses import fields, replace

import msgpack
import numpy as np

from reverie.engine import protocol as P
from reverie.engine.bench.report import finish

GAP_LIMIT_MS = 250.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=40.0, help="flood duration (default: %(default)s)")
    parser.add_argument("--sockets", type=int, default=4, help="flooding sockets (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=1600.0,
                        help="flood messages per second, all sockets together (default: %(default)s)")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="seconds the player plays alone first")
    parser.add_argument("--settle-s", type=float, default=4.0,
                        help="seconds after the flood before memory is read again (default: %(default)s)")
    parser.add_argument("--model", default="default", help="world model name (default: %(default)s)")
    parser.add_argument("--model-kwargs", default="{}", metavar="JSON", help="model factory arguments")
    parser.add_argument("--tiny", action="store_true",
                        help='shortcut for --model default --model-kwargs \'{"pretrained": false, "config": "tiny"}\'')
    parser.add_argument("--threads", type=int, default=None, help="server torch threads (default: cores - 1)")
    parser.add_argument("--total-budget-bytes", type=int, default=None,
                        help="the server's total session budget (default: the server's own default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flood's randomness")


def run(args: argparse.Namespace) -> int:
    from reverie.engine.commands.play import bench_server, start_server, stop_server

    model, kwargs, endpoint = bench_server(args)
    with tempfile.TemporaryDirectory(prefix="reverie-bench-flood-") as tmp:
        extra = ["--record-dir", tmp]
        if args.threads:
            extra += ["--threads", str(args.threads)]
        if args.total_budget_bytes:
            extra += ["--total-budget-bytes", str(args.total_budget_bytes)]
        proc, code = start_server(model, kwargs, endpoint, extra)
        if code is not None:
            print(f"reverie bench flood: the server for model '{model}' did not start (exit code {code})")
            return 2
        try:
            result = _bench(endpoint, proc.pid, args)
        finally:
            stop_server(proc)
    result.update(model=model, model_kwargs=json.loads(kwargs))
    _print(result)
    return finish(result, args.json)


def _bench(endpoint: str, pid: int, args) -> dict:
    import psutil

    from reverie.input.net import Connection

    memory = _RSS(psutil.Process(pid))
    player = _Player(Connection(endpoint, credits=1, client="bench-flood-player", timeout_s=120))
    flood = _Flood(endpoint, args.sockets, args.rate, tuple(player.conn.frame_shape), player.conn.welcome.policies,
                   args.seed)
    try:
        flood.start()
        player.start()
        time.sleep(args.warmup_s)
        rss_before = memory.now()
        memory.start()
        t0 = time.monotonic()
        flood.go()
        time.sleep(args.seconds / 2)
        join = _join(endpoint, deadline=t0 + args.seconds)
        time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
        flood.stop()
        t1 = time.monotonic()
        time.sleep(args.settle_s)
        stats = player.stats()
        memory.stop()
        rss_after = memory.now()
    finally:
        flood.stop()
        player.stop()
    welcome = player.conn.welcome
    during, alone = player.gaps(t0, t1), player.gaps(t0 - args.warmup_s, t0)
    server = stats.get("server", {})
    seconds = max(t1 - t0, 1e-9)
    flooded = {"seconds": round(t1 - t0, 2), "sockets": args.sockets, "flood_messages": flood.sent,
               "flood_attempts": flood.attempts, "flood_hellos": flood.hellos,
               "flood_rate": round(flood.sent / seconds, 1), "server_messages": int(server.get("messages", 0))}
    played = {"frames": len(player.during(t0, t1)), "fps": round(len(player.during(t0, t1)) / seconds, 2),
              "fps_alone": round(len(player.during(t0 - args.warmup_s, t0)) / args.warmup_s, 2),
              "gap_max_ms": round(1e3 * max(during), 1),
              "gap_p99_ms": round(1e3 * float(np.percentile(during, 99)), 1),
              "gap_max_ms_alone": round(1e3 * max(alone), 1), "gap_ok": 1e3 * max(during) < GAP_LIMIT_MS,
              "player_closed": player.conn.closed_reason, "policy": welcome.policy,
              "session_bytes": welcome.session_bytes}
    held = {"rss_before_bytes": rss_before, "rss_peak_bytes": memory.peak, "rss_after_bytes": rss_after,
            "rss_trace_mib": memory.trace, "total_budget_bytes": welcome.total_budget_bytes,
            "total_budget_source": server.get("total_budget_source", ""),
            "memory_ok": memory.peak < welcome.total_budget_bytes,
            "reserved_bytes_after": int(server.get("reserved_bytes", 0)),
            "sessions_after": int(server.get("sessions", 0))}
    counters = {k: v for k, v in server.items() if isinstance(v, int) and k != "total_budget_bytes"}
    return {**flooded, **played, **join, **held, "counters": counters}


class _Player:
    """The well-behaved client: one frame in flight, the next action as soon as a frame arrives."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.arrivals: list[float] = []
        self._halt = threading.Event()
        self._want_stats = threading.Event()
        self._stats_seen = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _play(self) -> None:
        conn, actions, asked = self.conn, [1, 1, 3, 1, 4, 7, 8], False
        while not self._halt.is_set() and conn.closed_reason is None:
            if conn.can_send():
                conn.send_action(actions[conn.seq % len(actions)])
            if self._want_stats.is_set():
                self._want_stats.clear()
                conn.stats, asked = {}, True
                conn.control("stats")
            before = conn.frames_received
            newest = conn.poll(20)
            if conn.frames_received > before:
                self.arrivals.append(time.monotonic())
                conn.mark_shown(newest)
            if asked and conn.stats:
                asked = False
                self._stats_seen.set()

    def stats(self, timeout_s: float = 10.0) -> dict:
        self._stats_seen.clear()
        self._want_stats.set()
        self._stats_seen.wait(timeout_s)
        return dict(self.conn.stats)

    def during(self, t0: float, t1: float) -> list[float]:
        return [t for t in self.arrivals if t0 <= t <= t1]

    def gaps(self, t0: float, t1: float) -> list[float]:
        """Seconds between frames in `[t0, t1]`, the window's ends counted as arrivals."""
        times = [t0, *self.during(t0, t1), t1]
        return [b - a for a, b in zip(times, times[1:])]

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(10)
        self.conn.close()


class _Flood:
    """The flood in a process of its own (it competes with the server and the player for the CPU, as a
    neighbour would, not for this process's interpreter lock): `start` readies it, `go` starts it, `stop`
    ends it and collects its counts (`sent`, `hellos`, `attempts`)."""

    def __init__(self, endpoint: str, sockets: int, rate: float, frame_shape: tuple, policies, seed: int) -> None:
        import multiprocessing

        mp = multiprocessing.get_context("spawn")
        self._ready, self._go, self._halt, self._out = mp.Event(), mp.Event(), mp.Event(), mp.Queue()
        self._proc = mp.Process(target=_flood_main, daemon=True, args=(
            endpoint, sockets, rate, tuple(frame_shape), list(policies), seed, self._ready, self._go, self._halt,
            self._out))
        self.sent = self.hellos = self.attempts = 0

    def start(self, timeout_s: float = 60.0) -> None:
        self._proc.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the flood process did not start")

    def go(self) -> None:
        self._go.set()

    def stop(self) -> None:
        if self._proc.pid is None or self._halt.is_set():
            return
        self._halt.set()
        self._go.set()
        try:
            self.sent, self.hellos, self.attempts = self._out.get(timeout=30)
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()


def _flood_main(endpoint, sockets, rate, frame_shape, policies, seed, ready, go, halt, out) -> None:
    flooder = _Flooder(endpoint, sockets, rate, frame_shape, policies, seed)
    ready.set()
    go.wait()
    flooder.run(halt)
    out.put((flooder.sent, flooder.hellos, flooder.attempts))


class _Flooder:
    """`sockets` DEALERs sending `rate` hostile messages a second in all (see the module docstring)."""

    def __init__(self, endpoint: str, sockets: int, rate: float, frame_shape: tuple, policies, seed: int) -> None:
        import zmq

        self.zmq, self.ctx = zmq, zmq.Context()
        self.endpoint, self.rate, self.frame_shape = endpoint, rate, frame_shape
        self.policies = list(policies) or ["dual"]
        self.rng = random.Random(seed)
        self.socks = [self._socket() for _ in range(max(1, sockets))]
        self.sent = self.hellos = self.attempts = 0

    def _socket(self):
        s = self.ctx.socket(self.zmq.DEALER)
        s.setsockopt(self.zmq.LINGER, 0)
        s.setsockopt(self.zmq.SNDHWM, 10_000)
        s.connect(self.endpoint)
        return s

    def run(self, halt) -> None:
        t0, i = time.monotonic(), 0
        while not halt.is_set():
            if self.rate > 0:
                ahead = t0 + i / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(min(ahead, 0.05))
                    continue
            parts = self._message()
            self.attempts += 1
            try:
                self.socks[i % len(self.socks)].send_multipart(parts, self.zmq.NOBLOCK)
                self.sent += 1
                self.hellos += _is_hello(parts)
            except self.zmq.ZMQError:  # the queue is full (the server reads slower): drop it, as a flood would
                pass
            i += 1
        for s in self.socks:
            s.close(0)
        self.ctx.term()

    def _message(self) -> list[bytes]:
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            return [rng.randbytes(rng.randrange(1, 64))]
        if r < 0.30:
            raw = bytearray(P.encode(P.Hello(client="x" * rng.randrange(40), credits=2)))
            for _ in range(rng.randrange(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            return [bytes(raw)]
        if r < 0.45:  # a kind with a field of the wrong type or range (or an unknown kind, another version)
            kind = rng.choice(list(P.KINDS) + ["nope"])
            names = [f.name for f in fields(P.KINDS.get(kind, P.Bye))]
            body = {"k": kind, "v": rng.choice([1, 1, 2, "1"]),
                    rng.choice(names): rng.choice([None, 2**64 - 1, "x" * 300, [1, 2], {"a": 1}, 3.5])}
            return [msgpack.packb(body, use_bin_type=True)]
        if r < 0.55:
            return [b"\x80" * rng.randrange(P.MAX_HEADER_BYTES + 1, 4 * P.MAX_HEADER_BYTES)]
        if r < 0.552:  # over the server's message limit: it drops the connection, which comes back as new
            return [bytes(rng.randrange(100_000, 200_000))]
        if r < 0.70:
            scene = rng.choice([None, {"handling": "cut"}, {"place": "nowhere"}, {"handling": "x"}, {"pose": [1]}])
            msg = rng.choice([P.Action(seq=1, action=rng.choice([-1, 27, 99])), P.Control(op="stats"),
                              P.Control(op="budget", value=10**12), P.Control(op="scene", value=scene), P.Frame(),
                              P.Welcome(), P.Bye()])
            return [P.encode(msg)]
        return self._hello(rng)

    def _hello(self, rng) -> list[bytes]:
        policy = rng.choice(self.policies + ["", "", "full", "no-such-policy"])
        budget = rng.choice([0, 0, 0, 1, -5, 10**15, rng.randrange(1, 50_000_000)])
        hello = P.Hello(client="flood", credits=rng.choice([1, 2, 5, 0]), policy=policy, budget_bytes=budget,
                        seed=rng.randrange(1000), record=rng.random() < 0.02)
        r = rng.random()
        if r < 0.3:  # with a seed frame, of the right size or not
            pixels = bytes(int(np.prod(self.frame_shape))) if r < 0.2 else b"short"
            return [P.encode(replace(hello, seed_frame=list(self.frame_shape))), pixels]
        return [P.encode(hello)]


def _is_hello(parts: list[bytes]) -> bool:
    try:
        return isinstance(P.decode(parts[0]), P.Hello)
    except P.ProtocolError:
        return False


def _join(endpoint: str, deadline: float) -> dict:
    """A new client joins during the flood, retrying after refusals it is told are temporary."""
    from reverie.input.bot import run_bot
    from reverie.input.net import Connection, ServerError

    attempts, error, t0 = 0, "", time.monotonic()
    while time.monotonic() < deadline:
        attempts += 1
        try:
            with Connection(endpoint, client="bench-flood-joiner", timeout_s=10) as conn:
                welcome_ms = 1e3 * (time.monotonic() - t0)
                frames = run_bot(conn, 5, [1, 3], timeout_s=20)["frames"]
            return {"joined": frames == 5, "join_ms": round(welcome_ms, 1), "join_attempts": attempts, "join_error": ""}
        except ServerError as exc:
            error = str(exc)
            if exc.code != "rate_limited":
                break
            time.sleep(1.0)
        except (TimeoutError, ConnectionError) as exc:
            error = str(exc)
            break
    return {"joined": False, "join_ms": None, "join_attempts": attempts, "join_error": error}


class _RSS(threading.Thread):
    """Resident memory of a process: `now()`; between start and stop, the peak (sampled every 50 ms) and
    a sample every `every_s` (`trace`, MiB)."""

    def __init__(self, proc, every_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.every_s, self.trace = proc, 0, every_s, []
        self._halt = threading.Event()

    def now(self) -> int:
        return int(self.proc.memory_info().rss)

    def run(self) -> None:
        t_next = time.monotonic()
        while not self._halt.wait(0.05):
            rss = self.now()
            self.peak = max(self.peak, rss)
            if time.monotonic() >= t_next:
                self.trace.append(round(rss / 2**20, 1))
                t_next += self.every_s

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.peak = max(self.peak, self.now())


def _print(r: dict) -> None:
    mb = 2**20
    print(f"flood      {r['flood_messages']} messages sent ({r['flood_hellos']} hellos; {r['flood_attempts']} tried, "
          f"the rest refused by full queues) from {r['sockets']} sockets in {r['seconds']} s; the server handled "
          f"{r['server_messages']}")
    print(f"player     {r['frames']} frames, {r['fps']} fps (alone {r['fps_alone']}); longest gap {r['gap_max_ms']} ms "
          f"(p99 {r['gap_p99_ms']} ms, alone {r['gap_max_ms_alone']} ms) {'OK' if r['gap_ok'] else 'OVER'} "
          f"{GAP_LIMIT_MS:.0f} ms")
    joined = f"yes, welcome in {r['join_ms']} ms" if r["joined"] else f"NO ({r['join_error']})"
    print(f"new client {joined} after {r['join_attempts']} attempt(s)")
    print(f"memory     {r['rss_before_bytes'] / mb:.0f} MiB before, {r['rss_peak_bytes'] / mb:.0f} MiB peak, "
          f"{r['rss_after_bytes'] / mb:.0f} MiB after (every 5 s: {r['rss_trace_mib']}); total budget "
          f"{r['total_budget_bytes'] / mb:.0f} MiB ({r['total_budget_source']}) {'OK' if r['memory_ok'] else 'OVER'}")
    print(f"server     {r['counters']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reverie.engine.bench.flood", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
