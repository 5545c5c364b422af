"""The pygame client, headless (SDL dummy driver), against the tiny model served from a thread."""

import numpy as np
import pygame
import pytest

from reverie.input.app import ClientConfig, GameClient
from reverie.input.hud import fmt_bytes, hud_lines
from serving import ServerThread
from reverie.world.actions import DOOM_ACTIONS


def upscale(frame, s):
    return np.kron(frame, np.ones((s, s, 1), np.uint8))


def screenshot(path):
    return pygame.surfarray.array3d(pygame.image.load(str(path))).transpose(1, 0, 2)  # [H, W, 3]


@pytest.fixture(scope="module")
def server():
    with ServerThread(budget_bytes=100_000) as st:
        yield st


def test_frames_reach_the_screen_scaled_up(server, tmp_path):
    shot = tmp_path / "plain.png"
    client = GameClient(ClientConfig(endpoint=server.endpoint, scale=4, hud=False, max_frames=8, screenshot=str(shot)),
                        extra_keys=lambda i: {"w", "a"} if i % 20 < 10 else {"s"})
    summary = client.run()
    latest = client.conn.latest
    assert summary["frames"] >= 8 and summary["latency_p95_ms"] > 0
    assert latest.header.action in (DOOM_ACTIONS.index("forward+turn_left"), DOOM_ACTIONS.index("back"))
    assert summary["key_changes"] >= 1 and summary["key_latency_p95_ms"] >= summary["latency_p50_ms"] * 0.5
    image = screenshot(shot)
    assert image.shape == (64, 64, 3)
    assert np.array_equal(image, upscale(latest.pixels, 4))


def test_hud_is_drawn_and_commands_work(server, tmp_path):
    shot = tmp_path / "hud.png"
    client = GameClient(ClientConfig(endpoint=server.endpoint, scale=8, hud=True, max_frames=30, screenshot=str(shot)))
    for key in (pygame.K_p, pygame.K_h, pygame.K_h):  # cycle the policy; HUD off and on again
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0))
    client.run()
    assert client.show_hud
    assert client.conn.stats.get("policy") == "window"  # the server's policies are full, window
    image = screenshot(shot).astype(int)
    frame = upscale(client.conn.latest.pixels, 8).astype(int)
    hud_box = np.abs(image[:40, :100] - frame[:40, :100]).sum()
    rest = np.abs(image[-20:, -20:] - frame[-20:, -20:]).sum()
    assert hud_box > 0 and rest == 0


def test_escape_quits_and_the_session_is_closed(server):
    client = GameClient(ClientConfig(endpoint=server.endpoint, scale=2, max_frames=10_000))
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=0))
    summary = client.run()
    assert summary["frames"] < 10_000 and client.conn.sock.closed


def test_the_client_keeps_to_its_rate_and_by_default_to_the_games_speed(server):
    client = GameClient(ClientConfig(endpoint=server.endpoint, scale=1, hud=False, max_frames=10, rate=20))
    summary = client.run()
    assert summary["rate_hz"] == 20 and summary["frames"] >= 10
    assert summary["seconds"] >= 9 / 20            # ten frames asked for 1/20 s apart
    client = GameClient(ClientConfig(endpoint=server.endpoint, scale=1, hud=False, max_frames=2))
    assert client.conn.welcome.step_hz == 35.0     # the tiny model's frame is one tic of the 35 Hz game
    assert client.run()["rate_hz"] == 35.0
    client = GameClient(ClientConfig(endpoint=server.endpoint, scale=1, hud=False, max_frames=2, rate="max"))
    assert client.run()["rate_hz"] is None
    with pytest.raises(ValueError, match="rate must be"):
        ClientConfig(rate="fast")


def test_hud_lines_say_what_the_numbers_are():
    stats = {"policy": "dual", "memory": {"kv_bytes": 3 * 2**20, "budget_bytes": 8 * 2**20,
                                          "regions": {"sink": 2**20, "recent": {"bf16": 2**21}}}}
    lines = hud_lines(fps=15.2, latency_p50=40, latency_p95=70, stats=stats, recording=True, paused=True,
                      key_latency=(55, 90))
    text = "\n".join(lines)
    for part in ("FPS  15.2", "p50    40 ms", "p95    70 ms", "key p50   55 p95   90 ms", "KV 3.0 MB / 8.0 MB", "policy dual", "sink 1.0 MB",
                 "recent 2.0 MB", "REC", "PAUSED"):
        assert part in text, part
    assert "no budget" in "\n".join(hud_lines(fps=0, latency_p50=0, latency_p95=0, stats={}))
    assert "FPS   8.7 of 8.8" in hud_lines(fps=8.7, target_fps=8.75, latency_p50=0, latency_p95=0, stats={})[0]
    assert fmt_bytes(512) == "512 B" and fmt_bytes(None) == "-"


def test_side_by_side_plays_the_real_game_on_the_same_inputs(tmp_path):
    pytest.importorskip("vizdoom")
    from tinyworld import TinyWorld

    from reverie.world.games.doom import DoomConfig, DoomGame

    shot = tmp_path / "sbs.png"
    with ServerThread(TinyWorld(h=48, w=64, patch=8), budget_bytes=10**6) as st:
        client = GameClient(ClientConfig(endpoint=st.endpoint, scale=1, hud=False, side_by_side=True, max_frames=6,
                                         screenshot=str(shot)), extra_keys=lambda i: {"w", "d"})
        client.run()
        last_seq = client.conn.latest.header.seq
        neural = client.conn.latest.pixels.copy()
    with DoomGame(DoomConfig(resolution=(64, 48))) as game:   # the same actions on a fresh real game
        game.reset(0)
        for _ in range(last_seq):
            real = game.step(DOOM_ACTIONS.index("forward+turn_right")).frame
    image = screenshot(shot)
    assert image.shape == (48, 128, 3)
    top = slice(0, 48 - 20)  # the pane labels ("real game", "neural game") are drawn along the bottom
    assert np.array_equal(image[top, :64], real[top]) and np.array_equal(image[top, 64:], neural[top])


def test_a_vanished_server_is_reported_not_waited_on_forever():
    st = ServerThread()
    st.thread.start()
    client = GameClient(ClientConfig(endpoint=st.endpoint, scale=1, server_timeout_s=1.0, max_seconds=20))
    st.server.stop()
    st.thread.join(5)
    with pytest.raises(ConnectionError, match="stopped answering|closed the session"):
        client.run()


def _motion(rel):
    pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, rel=rel, pos=(0, 0), buttons=(0, 0, 0)))


def test_mouse_motion_goes_out_with_the_keys_and_g_releases_it():
    from tinyworld import KEYS_MOUSE, TinyWorld

    with ServerThread(model=TinyWorld(action_space=KEYS_MOUSE), budget_bytes=100_000) as st:
        client = GameClient(ClientConfig(endpoint=st.endpoint, scale=2, hud=False, max_frames=6, rate="max",
                                         mouse_sensitivity=2.0), extra_keys=lambda i: {"w", "space"})
        assert client.mouse.grabbed                  # the model reads the mouse: grabbed from the start
        sent = []
        send = client.conn.send_action
        client.conn.send_action = lambda a: (sent.append(a), send(a))[1]
        for rel in ((5, 0), (3, -4)):                # two motions before the first action: summed
            _motion(rel)
        client.run()
        buttons, axes = KEYS_MOUSE.held(sent[0])
        assert buttons == ("forward", "jump")        # space is the model's jump, not pause
        assert axes == pytest.approx((8 * 0.05 * 2, -4 * -0.05 * 2))
        assert all(KEYS_MOUSE.held(a)[1] == (0.0, 0.0) for a in sent[1:])   # each motion is sent once
        assert KEYS_MOUSE.held(KEYS_MOUSE.coerce(client.conn.latest.header.action))[0] == ("forward", "jump")

        client = GameClient(ClientConfig(endpoint=st.endpoint, scale=2, hud=False, max_frames=4, rate="max"))
        sent = []
        send = client.conn.send_action
        client.conn.send_action = lambda a: (sent.append(a), send(a))[1]
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_g, mod=0, unicode="g", scancode=0))
        _motion((50, 50))                            # after G: the cursor is free, the mouse moves nothing
        client.run()
        assert not client.mouse.grabbed and all(KEYS_MOUSE.held(a)[1] == (0.0, 0.0) for a in sent)


def test_side_by_side_needs_the_real_games_controls():
    from tinyworld import KEYS_MOUSE, TinyWorld

    with ServerThread(model=TinyWorld(action_space=KEYS_MOUSE), budget_bytes=100_000) as st:
        with pytest.raises(ValueError, match="real game's controls"):
            GameClient(ClientConfig(endpoint=st.endpoint, side_by_side=True))


def test_the_scene_key_starts_a_new_scene_from_an_image_and_the_recording_holds_it(tmp_path):
    from reverie.engine.rollout import read_rollout

    png = tmp_path / "red.png"
    surface = pygame.Surface((40, 30))
    surface.fill((200, 20, 10))
    pygame.image.save(surface, str(png))
    with ServerThread(budget_bytes=100_000, record_dir=str(tmp_path / "rec")) as st:
        client = GameClient(ClientConfig(endpoint=st.endpoint, scale=1, hud=False, max_frames=12, record=True,
                                         scene_images=(str(png),), scene_handling="cut"))
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_n, mod=0, unicode="", scancode=0))
        client.run()
        client.conn.close()
    r = read_rollout(next((tmp_path / "rec").iterdir()))
    rows = [t for t, e in enumerate(r.extras) if e and e.get("scene") == "cut"]
    assert len(rows) == 1 and (r.frames[rows[0]] == (200, 20, 10)).all()


def test_scene_images_that_cannot_be_frames_are_refused_clearly(tmp_path):
    from reverie.input.scene_images import load_scene_image

    np.save(tmp_path / "small.npy", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="needs uint8"):
        load_scene_image(tmp_path / "small.npy", (16, 16, 3))
    with pytest.raises(ValueError, match="scene image"):
        load_scene_image(tmp_path / "missing.png", (16, 16, 3))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="scene image"):
        load_scene_image(tmp_path / "junk.png", (16, 16, 3))
