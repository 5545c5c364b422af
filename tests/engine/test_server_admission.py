"""Admission by real bytes, the default total, and what a flood of hellos can (not) do to the server."""

import time

import psutil
import pytest
import zmq

from reverie.engine import protocol as P
from reverie.engine.ratelimit import Rate
from reverie.engine.session import default_memory_factory
from reverie.input.bot import run_bot
from reverie.input.net import Connection, ServerError
from reverie.memory import session_bytes
from reverie.memory.measure import measure
from serving import ServerThread, raw_socket, recv

REAL_MEMORY = dict(memory_factory=default_memory_factory, footprint=session_bytes)


def held_by_sessions(server) -> int:
    """Bytes the server's sessions really hold (the server is idle: nothing moves while this walks)."""
    model = server.model
    return sum(measure(c.session, exclude=(model, model.spec)).total for c in server.clients.values())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_default_sessions_until_refusal_hold_what_was_reserved_within_the_total():
    with ServerThread(**REAL_MEMORY) as probe:                     # the real memory, the default policy (dual)
        price = probe.server.price(probe.server.config.policy, None).total
    total = int(3.5 * price)
    with ServerThread(total_budget_bytes=total, **REAL_MEMORY) as st:
        conns, refusal = [], None
        for _ in range(8):
            try:
                conns.append(Connection(st.endpoint, timeout_s=10))
            except ServerError as exc:
                refusal = exc
                break
            assert run_bot(conns[-1], 2, [1, 3])["frames"] == 2     # playing: every part of a session in use
        try:
            assert len(conns) == 3 and refusal is not None
            assert refusal.code == "refused" and f"needs {price:,} bytes" in str(refusal)
            assert "KV cache, archive, buffers" in str(refusal) and f"of the server's {total:,} bytes" in str(refusal)
            welcome = conns[0].welcome
            assert welcome.policy == "dual" and welcome.session_bytes == price and welcome.total_budget_bytes == total
            held = held_by_sessions(st.server)
            assert st.server.admission.reserved_bytes == 3 * price and 0.8 * 3 * price < held <= 3 * price <= total
            conns[0].control("stats")
            deadline = time.monotonic() + 5
            while not conns[0].stats and time.monotonic() < deadline:
                conns[0].poll(50)
            stats = conns[0].stats
            assert stats["footprint"]["total_bytes"] == price and stats["footprint"]["parts"]["archive"] > 0
            assert stats["server"]["total_budget_bytes"] == total and stats["server"]["reserved_bytes"] == 3 * price
        finally:
            for c in conns:
                c.close()


def test_the_default_total_is_half_the_available_memory_and_said_so():
    with ServerThread() as st:
        total, available = st.server.total, psutil.virtual_memory().available
        assert 0.4 * available < total.bytes < 0.6 * available
        assert total.source.startswith("50% of the available host memory")
        with Connection(st.endpoint) as c:
            assert c.welcome.total_budget_bytes == total.bytes and c.welcome.session_bytes > 200_000


def test_a_bad_hello_is_refused_before_anything_is_built():
    built = []

    def counting_factory(spec, policy, budget):
        built.append(policy)
        from tinyworld import list_memory_factory
        return list_memory_factory(spec, policy, budget)

    with ServerThread(memory_factory=counting_factory, policy="full", policies=("full",),
                      budget_bytes=200_000) as st:
        sock = raw_socket(st.endpoint)
        cases = [([P.encode(P.Hello(credits=0))], "bad_field"),
                 ([P.encode(P.Hello(seed_frame=[16, 16, 3])), b"short"], "bad_field"),
                 ([P.encode(P.Hello(policy="nope"))], "refused"),
                 ([P.encode(P.Hello(budget_bytes=10))], "refused"),
                 ([P.encode(P.Hello(budget_bytes=-5))], "refused"),
                 ([P.encode(P.Hello(budget_bytes=10**15))], "refused")]
        for parts, code in cases:
            sock.send_multipart(parts)
            msg, _ = recv(sock)
            assert isinstance(msg, P.Error) and msg.code == code, (parts[0][:30], msg)
        assert built == [] and not st.server.clients
        sock.close()


def test_hellos_are_rate_limited_per_peer_and_in_all_with_a_clear_message():
    with ServerThread(peer_rate=Rate(burst=2, per_s=0.1), server_rate=Rate(burst=3, per_s=0.1)) as st:
        sock = raw_socket(st.endpoint)
        replies = []
        for _ in range(3):                                 # one peer: two sessions (one replaces the other)
            sock.send_multipart([P.encode(P.Hello())])
            replies.append(recv(sock)[0])
        assert [type(r) for r in replies] == [P.Welcome, P.Welcome, P.Error]
        assert replies[2].code == "rate_limited" and "this client starts sessions too often" in replies[2].message
        assert "try again in" in replies[2].message and len(st.server.clients) == 1
        other = raw_socket(st.endpoint)                    # a second peer takes the server's last token ...
        other.send_multipart([P.encode(P.Hello())])
        assert isinstance(recv(other)[0], P.Welcome)
        with pytest.raises(ServerError) as info:           # ... and a third finds none left
            Connection(st.endpoint, timeout_s=5)
        assert info.value.code == "rate_limited" and "the server is starting too many sessions" in str(info.value)
        sock.close()
        other.close()


def test_sessions_that_never_play_or_send_garbage_are_closed_and_free_their_slots():
    with ServerThread(max_sessions=2, pending_ttl_s=1.0, max_strikes=4) as st:
        idle = Connection(st.endpoint)                      # opens a session and never asks for a frame
        noisy = raw_socket(st.endpoint)
        noisy.send_multipart([P.encode(P.Hello())])
        assert isinstance(recv(noisy)[0], P.Welcome)
        for _ in range(4):                                  # a session whose client sends garbage
            noisy.send_multipart([b"\xc1"])
        deadline = time.monotonic() + 5
        while (st.server.clients or idle.closed_reason is None) and time.monotonic() < deadline:
            idle.poll(50)                                   # the bye may land just after the server closed it
        assert not st.server.clients and "no action within 1 s" in (idle.closed_reason or "")
        assert st.server.counters["sessions_unused"] == 1 and st.server.counters["sessions_struck"] == 1
        with Connection(st.endpoint) as a, Connection(st.endpoint) as b:   # both slots are free again
            assert run_bot(a, 2, [1])["frames"] == 2 and run_bot(b, 2, [1])["frames"] == 2
        idle.close()
        noisy.close()


def test_a_player_keeps_its_frames_while_hellos_and_garbage_pour_in():
    with ServerThread(pending_ttl_s=0.5) as st, Connection(st.endpoint) as player:
        run_bot(player, 3, [1])
        ctx = zmq.Context()
        socks = []
        for _ in range(3):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(st.endpoint)
            socks.append(s)
        arrivals, t_end = [], time.monotonic() + 2.0
        i = 0
        while time.monotonic() < t_end:
            for s in socks:
                s.send_multipart([P.encode(P.Hello())] if i % 3 == 0 else [b"\x80" * (i % 9000)], zmq.NOBLOCK)
                i += 1
            if player.can_send():
                player.send_action(1)
            if player.poll(2) is not None:
                arrivals.append(time.monotonic())
        for s in socks:
            s.close(0)
        ctx.term()
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert len(arrivals) > 20 and max(gaps) < 0.5, (len(arrivals), max(gaps))  # 250 ms: bench flood
        assert st.server.counters["error_rate_limited"] > 0 and len(st.server.clients) <= 1 + len(socks)


def test_serve_help_states_the_default_total(capsys):
    from reverie.engine.cli import main

    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert info.value.code == 0 and "(default: 50% of the memory free at start" in out and "--pending-ttl" in out
