"""The server over real ZeroMQ sockets on loopback (server in a thread, clients in the test)."""

import time

import msgpack
import numpy as np
import pytest

from reverie.engine import protocol as P
from reverie.engine.rollout import read_rollout
from reverie.input.bot import run_bot
from reverie.input.net import Connection, ServerError
from serving import ServerThread, raw_socket, recv, seed_frame
from tinyworld import TinyWorld, list_memory_bytes


def test_a_session_plays_frames_with_echoed_timestamps():
    with ServerThread() as st, Connection(st.endpoint) as c:
        assert c.frame_shape == (16, 16, 3) and c.welcome.model == "tinyworld" and len(c.welcome.actions) == 27
        assert c.welcome.tics_per_step == 1 and c.welcome.step_hz == 35.0  # real time: 35 game tics a second
        seq = c.send_action(1)
        frame = None
        while frame is None:
            frame = c.poll(1000)
        h = frame.header
        assert h.seq == seq and h.action == 1 and h.index == 0 and h.t_start_ns <= h.t_end_ns
        assert h.t_client_ns <= h.t_start_ns and len(h.pose) == 3 and h.kv_bytes > 0
        assert frame.pixels.shape == (16, 16, 3) and frame.pixels.dtype == np.uint8
        assert c.mark_shown(frame) >= 0


def test_a_client_seed_frame_starts_the_world_and_same_seed_gives_same_frames():
    frames = []
    with ServerThread() as st:
        for _ in range(2):
            with Connection(st.endpoint, seed=7, seed_frame=seed_frame((16, 16, 3))) as c:
                got = []
                run_bot(c, 6, [1, 3, 1, 4], on_frame=lambda f: got.append(f.pixels.copy()))
                frames.append(np.stack(got))
    assert np.array_equal(frames[0], frames[1])


def test_sessions_share_the_device_fairly():
    with ServerThread() as st, Connection(st.endpoint, credits=2) as a, Connection(st.endpoint, credits=2) as b:
        counts = {id(a): 0, id(b): 0}
        deadline = time.monotonic() + 20
        while min(counts.values()) < 15 and time.monotonic() < deadline:
            for c in (a, b):
                if c.can_send():
                    c.send_action(1)
                before = c.frames_received
                c.poll(5)
                counts[id(c)] += c.frames_received - before
        assert min(counts.values()) >= 15 and abs(counts[id(a)] - counts[id(b)]) <= 2


def test_admission_refuses_what_does_not_fit_and_disturbs_nothing():
    price = list_memory_bytes(TinyWorld().spec, "full", 40_000).total  # the budget, buffers, bookkeeping
    assert price > 40_000
    with ServerThread(budget_bytes=40_000, total_budget_bytes=2 * price + price // 2) as st:
        with Connection(st.endpoint) as a, Connection(st.endpoint) as b:
            assert a.welcome.session_bytes == price and a.welcome.total_budget_bytes == 2 * price + price // 2
            with pytest.raises(ServerError) as info:
                Connection(st.endpoint)
            assert info.value.code == "refused" and "free" in str(info.value)
            assert f"needs {price:,} bytes" in str(info.value)
            with pytest.raises(ServerError, match="two frames"):  # the memory itself refuses a tiny budget
                Connection(st.endpoint, budget_bytes=10)
            for c in (a, b):
                assert run_bot(c, 3, [1])["frames"] == 3
        deadline = time.monotonic() + 5              # the two byes free their reservations
        while st.server.clients and time.monotonic() < deadline:
            time.sleep(0.02)
        assert st.server.admission.reserved_bytes == 0 and not st.server.clients


def test_live_controls_policy_budget_pause_reset_record(tmp_path):
    with ServerThread(record_dir=str(tmp_path), budget_bytes=60_000, total_budget_bytes=200_000) as st, \
            Connection(st.endpoint) as c:
        run_bot(c, 3, [1])

        def control(op, value=None):
            c.control(op, value)
            deadline = time.monotonic() + 5
            n = len(c.errors)
            while time.monotonic() < deadline:
                c.stats = {}
                c.poll(100)
                if c.stats or len(c.errors) > n:
                    return c.stats
            raise AssertionError("no reply")

        assert control("policy", "window")["policy"] == "window"
        assert control("budget", 30_000)["budget_bytes"] == 30_000
        assert control("budget", 10**9) == {} and c.errors[-1].code == "refused"
        assert control("pause")["paused"] is True
        c.send_action(1)
        assert c.poll(300) is None                 # paused: nothing is generated
        before = c.frames_received
        assert control("resume")["paused"] is False  # (the frame may arrive in the same drain as the reply)
        deadline = time.monotonic() + 10
        while c.frames_received == before and time.monotonic() < deadline:
            c.poll(200)
        assert c.frames_received == before + 1     # the action sent while paused is served on resume
        assert control("reset")["frame_index"] == 0
        assert control("record", True)["recording"] is True
        run_bot(c, 5, [2])
        stats = control("record", False)
        assert stats["recording"] is False
        assert control("teleport") == {} and c.errors[-1].code == "bad_field"
        assert control("seed", "x") == {} and c.errors[-1].code == "bad_field"
    r = read_rollout(next(tmp_path.iterdir()))
    assert r.complete and len(r) >= 6 and r.actions[0] == 0 and set(r.actions[1:].tolist()) == {2}
    assert r.meta.source == "model:tinyworld" and r.meta.config["policy"] == "window"
    assert r.meta.fps == 35.0                      # replays at the model's real-time rate


def test_bad_messages_get_error_replies_and_other_sessions_keep_playing():
    with ServerThread() as st, Connection(st.endpoint) as good:
        bad = raw_socket(st.endpoint)
        cases = [
            ([b"\xc1"], "malformed"),
            ([msgpack.packb({"k": "action", "v": 99})], "version"),
            ([msgpack.packb({"k": "hello", "v": 1})], "version"),                       # a version-1 client
            ([b"\x80" * (P.MAX_HEADER_BYTES + 10)], "oversize"),
            ([P.encode(P.Action(seq=1))], "no_session"),
            ([P.encode(P.Frame())], "unexpected"),
            ([P.encode(P.Hello(seed_frame=[16, 16, 3]))], "malformed"),                  # no pixels part
            ([P.encode(P.Hello(seed_frame=[16, 16, 3])), b"123"], "bad_field"),         # wrong size
            ([P.encode(P.Hello(seed_frame=[8, 8, 3])), bytes(192)], "bad_field"),        # wrong shape
            ([P.encode(P.Hello(credits=0))], "bad_field"),
        ]
        for parts, code in cases:
            bad.send_multipart(parts)
            msg, _ = recv(bad)
            assert isinstance(msg, P.Error) and msg.code == code, (parts[0][:20], msg)
            assert run_bot(good, 1, [1])["frames"] == 1
        bad.send_multipart([P.encode(P.Hello())])
        assert isinstance(recv(bad)[0], P.Welcome)
        for action in (99, True, "fly", {"buttons": ["jump"]}, {"axes": {"yaw": 1.0}}, [1.0] * 6, None):
            bad.send_multipart([P.encode(P.Action(seq=1, action=action))])
            assert recv(bad)[0].code == "bad_field", action
        bad.send_multipart([P.encode(P.Action(seq=1)), b"extra"])
        assert recv(bad)[0].code == "malformed"
        bad.close()
        assert st.server.counters["errors"] >= len(cases) + 8


def test_a_silent_client_is_freed_after_its_ttl():
    with ServerThread(ttl_s=0.5, budget_bytes=50_000, total_budget_bytes=200_000) as st:  # room for one
        c = Connection(st.endpoint)
        run_bot(c, 2, [1])
        c.sock.close(linger=0)                        # vanishes mid-stream, no bye
        deadline = time.monotonic() + 5
        while st.server.clients and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not st.server.clients and st.server.counters["sessions_expired"] == 1
        with Connection(st.endpoint) as again:        # its memory budget is free again
            assert run_bot(again, 1, [1])["frames"] == 1


def test_slow_client_gets_the_latest_frame_not_a_backlog():
    with ServerThread() as st, Connection(st.endpoint, credits=2) as c:
        c.control("pause")                           # nothing is generated while the actions pile up
        for _ in range(10):                          # more than its 2 credits: the server keeps the newest two
            c.send_action(1)
        c.control("resume")
        got = []
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            c.poll(100)
            if c.latest is not None and (not got or got[-1] != c.latest.header.seq):
                got.append(c.latest.header.seq)
        (client,) = st.server.clients.values()
        assert client.frames == 2 and st.server.counters["coalesced"] == 8
        assert got[-1] == 10 and set(got) <= {9, 10}


def test_reset_while_recording_starts_a_new_recording_and_both_regenerate(tmp_path):
    from reverie.engine.replay import regenerate
    from tinyworld import list_memory_factory

    with ServerThread(record_dir=str(tmp_path), budget_bytes=60_000) as st, Connection(st.endpoint, seed=5) as c:
        run_bot(c, 2, [4])
        c.control("record", True)
        run_bot(c, 4, [1, 7])
        c.control("reset")
        run_bot(c, 3, [3])
        c.control("record", False)
        c.control("stats")
        while not c.stats:
            c.poll(100)
        model = st.model
    first, second = sorted(tmp_path.iterdir())
    for path, prefix, n in ((first, [4, 4], 4), (second, [], 3)):
        r = read_rollout(path)
        assert r.complete and len(r) == n + 1 and r.meta.config["prefix_actions"] == prefix
        assert np.array_equal(regenerate(r, model, memory_factory=list_memory_factory), r.frames[1:])


def test_without_a_default_seed_frame_a_hello_must_bring_one():
    def no_frame(shape):
        raise RuntimeError("vizdoom is not installed")

    with ServerThread(seed_frame_fn=no_frame) as st:
        with pytest.raises(ServerError, match="no seed frame .*vizdoom is not installed.*send one"):
            Connection(st.endpoint)
        with Connection(st.endpoint, seed_frame=seed_frame((16, 16, 3))) as c:
            assert run_bot(c, 2, [1])["frames"] == 2


def test_a_hello_may_bring_history_to_resume_from_and_bad_history_is_refused():
    import numpy as np

    from serving import seed_frame

    frame = seed_frame((16, 16, 3))
    history = np.stack([frame // 2, frame // 3, frame // 4])
    with ServerThread() as st:
        ok = raw_socket(st.endpoint)
        ok.send_multipart([P.encode(P.Hello(seed_frame=[16, 16, 3], history=3, history_actions=[1, 3, "forward"])),
                           frame.tobytes(), *(f.tobytes() for f in history)])
        assert isinstance(recv(ok)[0], P.Welcome)
        (client,) = st.server.clients.values()
        assert client.session.memory.frames_committed == 4 and not client.session.replayable
        ok.close()
        cases = [
            ([P.encode(P.Hello(history=1, history_actions=[1])), history[0].tobytes()], "malformed"),
            ([P.encode(P.Hello(seed_frame=[16, 16, 3], history=3, history_actions=[1, 1, 1])), frame.tobytes()],
             "malformed"),
            ([P.encode(P.Hello(seed_frame=[16, 16, 3], history=3, history_actions=[1, 1, 1])), frame.tobytes(),
              history[0].tobytes(), history[1].tobytes(), b"short"], "bad_field"),
            ([P.encode(P.Hello(seed_frame=[16, 16, 3], history=3, history_actions=[1, 1])), frame.tobytes(),
              *(f.tobytes() for f in history)], "bad_field"),
            ([P.encode(P.Hello(seed_frame=[16, 16, 3], history=3, history_actions=[1, 1, 99])), frame.tobytes(),
              *(f.tobytes() for f in history)], "bad_field"),
            ([P.encode(P.Hello(seed_frame=[16, 16, 3], history=999, history_actions=[1] * 999)), frame.tobytes(),
              b"x"], "malformed"),
        ]
        for parts, code in cases:
            bad = raw_socket(st.endpoint)
            bad.send_multipart(parts)
            msg = recv(bad)[0]
            assert isinstance(msg, P.Error) and msg.code == code, (code, msg)
            bad.close()


def _reply(c: Connection, timeout_s: float = 5.0):
    """The stats or the error that answers the last control (None if neither came)."""
    c.stats, n = {}, len(c.errors)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c.poll(100)
        if c.stats:
            return c.stats
        if len(c.errors) > n:
            return c.errors[-1]
    return None


def test_a_player_changes_the_scene_mid_session_and_the_recording_replays_it(tmp_path):
    from reverie.engine.replay import regenerate
    from reverie.engine.session import default_memory_factory
    from reverie.memory.footprint import session_bytes

    places = {"red": np.full((16, 16, 3), (200, 30, 30), np.uint8), None: np.full((16, 16, 3), 90, np.uint8)}
    with ServerThread(record_dir=str(tmp_path), memory_factory=default_memory_factory, footprint=session_bytes,
                      policy="window", policies=("window",), scene_frame_fn=lambda place: places[place]) as st, \
            Connection(st.endpoint, seed=2) as c:
        c.control("record", True)
        run_bot(c, 3, [1])
        mine = np.full((16, 16, 3), 7, np.uint8)
        c.scene(mine, handling="cut")                                   # the player's own frame
        assert _reply(c)["memory"]["skipped_frames"] == 25
        run_bot(c, 2, [3])
        c.scene(place="red", handling="flush", pose=(1.0, 2.0, 45.0))   # a place the server shows
        assert _reply(c)["memory"]["events"] == {"cut": 1, "flush": 1}
        run_bot(c, 2, [7])
        c.scene()                                                       # the server's next place, the policy's way
        assert isinstance(_reply(c), dict)
        run_bot(c, 1, [1])
        for kwargs, code in (({"place": "blue"}, "bad_field"), ({"handling": "drop"}, "bad_field"),
                             ({"pose": (1.0, 2.0)}, "bad_field"), ({"frame": mine, "place": "red"}, "bad_field")):
            c.scene(**kwargs)
            assert _reply(c).code == code, kwargs
        bad = [P.encode(P.Control(op="scene")), bytes(16 * 16 * 3 - 1)]
        c.sock.send_multipart(bad)
        assert _reply(c).code == "bad_field"                            # a short frame part
        c.sock.send_multipart([P.encode(P.Control(op="scene")), bytes(768), bytes(768)])
        assert _reply(c).code == "malformed"                            # two frame parts
        c.sock.send_multipart([P.encode(P.Control(op="flush")), bytes(768)])
        assert _reply(c).code == "malformed"                            # only a scene carries a part
        assert run_bot(c, 1, [1])["frames"] == 1                        # the session plays on
        c.control("record", False)
        _reply(c)
        model = st.model
    r = read_rollout(next(tmp_path.iterdir()))
    scenes = [(t, e["scene"]) for t, e in enumerate(r.extras) if e and "scene" in e]
    assert scenes == [(4, "cut"), (7, "flush"), (10, "flush")] and r.meta.config["regenerable"]
    assert np.array_equal(r.frames[4], mine) and np.array_equal(r.frames[7], places["red"])
    assert r.poses[7].tolist() == [1.0, 2.0, 45.0]
    assert np.array_equal(regenerate(r, model, memory_factory=default_memory_factory), r.frames[1:])


def test_a_server_without_places_refuses_a_scene_without_a_frame():
    with ServerThread() as st, Connection(st.endpoint) as c:
        c.scene()
        assert _reply(c).code == "refused"
        assert run_bot(c, 1, [1])["frames"] == 1
