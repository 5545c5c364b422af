"""10,000 random and malformed messages while a well-formed session keeps playing."""

import random
import threading
import time

import msgpack
import zmq

from reverie.engine import protocol as P
from reverie.input.net import Connection
from serving import ServerThread

N_MESSAGES = 10_000


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 3 else 6)
    makers = [lambda: None, lambda: rng.random() < 0.5, lambda: rng.choice([rng.randrange(-2**63, 2**64), rng.randrange(-3, 40)]),
              lambda: rng.random() * 1e9, lambda: "".join(rng.choice("abcxyz+_") for _ in range(rng.randrange(12))),
              lambda: rng.randbytes(rng.randrange(8)),
              lambda: [random_value(rng, depth + 1) for _ in range(rng.randrange(4))],
              lambda: {rng.choice(["k", "v", "seq", "op", "value", "action", "shape", "x"]): random_value(rng, depth + 1)
                       for _ in range(rng.randrange(4))},
              lambda: P.encode(P.Action(seq=rng.randrange(100)))]
    return makers[kind]()


def fuzz_message(rng: random.Random) -> list[bytes]:
    valid = [P.encode(m) for m in (P.Hello(), P.Action(seq=1, action=3), P.Control(op="stats"),
                                   P.Control(op="policy", value="window"), P.Control(op="reset"), P.Frame(),
                                   P.Control(op="scene", value={"handling": "cut"}))]
    r = rng.randrange(8)
    if r == 0:
        return [rng.randbytes(rng.randrange(64))]
    if r == 1:  # a valid header with random bytes flipped
        raw = bytearray(rng.choice(valid))
        for _ in range(rng.randrange(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return [bytes(raw)]
    if r == 2:  # a known kind with random fields and types
        body = {"k": rng.choice(list(P.KINDS)), "v": rng.choice([1, 1, 1, 0, 2, "1", None])}
        body.update({rng.choice(["seq", "action", "op", "value", "credits", "seed_frame", "policy", "budget_bytes",
                                 "t_client_ns", "record", "shown_seq"]): random_value(rng) for _ in range(3)})
        return [msgpack.packb(body, use_bin_type=True)]
    if r == 3:
        return [msgpack.packb(random_value(rng), use_bin_type=True)]
    if r == 4:  # extra or missing parts
        return [rng.choice(valid)] + [rng.randbytes(rng.randrange(300)) for _ in range(rng.randrange(1, 3))]
    if r == 5:
        return [b"\x80" * rng.randrange(P.MAX_HEADER_BYTES, 3 * P.MAX_HEADER_BYTES)]
    if r == 6:
        return [b""]
    return [rng.choice(valid)]  # well-formed messages in the wrong order / without a session


def test_fuzz_never_crashes_the_server_and_a_good_session_keeps_playing():
    with ServerThread(max_sessions=4, budget_bytes=200_000) as st:
        stop = threading.Event()
        arrivals: list[float] = []
        failure: list[BaseException] = []

        def play():
            try:
                with Connection(st.endpoint, context=zmq.Context()) as good:
                    while not stop.is_set():
                        if good.can_send():
                            good.send_action(1)
                        if good.poll(20) is not None:
                            arrivals.append(time.monotonic())
                        assert good.closed_reason is None, good.closed_reason
                        good.keepalive()
            except BaseException as exc:  # surfaced below
                failure.append(exc)

        player = threading.Thread(target=play)
        player.start()
        while not arrivals and player.is_alive():
            time.sleep(0.01)
        rng = random.Random(1234)
        ctx = zmq.Context()
        fuzzers = []
        for _ in range(4):  # several identities: some get sessions by sending a valid hello
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 0)
            s.connect(st.endpoint)
            fuzzers.append(s)
        t0 = time.monotonic()
        for i in range(N_MESSAGES):
            rng.choice(fuzzers).send_multipart(fuzz_message(rng))
        deadline = time.monotonic() + 30
        while st.server.counters["messages"] < N_MESSAGES and time.monotonic() < deadline:
            time.sleep(0.05)
        t1 = time.monotonic()
        time.sleep(0.3)
        stop.set()
        player.join(10)
        for s in fuzzers:
            s.close(0)
        ctx.term()
        assert not failure, failure
        assert st.thread.is_alive(), "the server loop died"
        assert st.server.counters["messages"] >= N_MESSAGES
        assert st.server.counters["errors"] > N_MESSAGES // 4
        assert st.server.counters["internal"] == 0, "a bad message reached the last line of defence"
        print(dict(st.server.counters))
        during = [t for t in arrivals if t0 <= t <= t1]
        gaps = [b - a for a, b in zip([t0] + during, during + [t1])]
        assert len(during) >= 5 and max(gaps) < 2.0, (len(during), max(gaps))
