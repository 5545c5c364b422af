"""The pygame client: keys in, frames out, never waiting on the model.

Loop (one iteration per display tick): command keys from events -> held keys polled -> action (pure
keymap function) -> send it if a credit is free and the pace allows (`input.pacing`: by default the
game's own speed, which the server states) -> wait for the socket up to the tick's end, keep the
newest frame -> when a frame arrives, poll the keys again and send the next action at once (the server
works while we draw) -> scale, HUD, flip -> report the frame shown (its key-to-display latency). The engine runs
in its own process; this process never imports torch.

Controls come from the model: the keymap derives from the buttons and keys its action space declares
(`input.keymap.keymap_for`), and when it declares axes read from the mouse, the mouse is grabbed in
relative mode and its motion since the last action goes out with the keys (`input.mouse`; G releases it).

With `side_by_side`, the real game (ViZDoom) runs here on the same actions: the neural session starts
from the real game's first frame, and each neural frame is shown next to the real frame of the same
action.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import pygame

from reverie.input.hud import hud_lines
from reverie.input.keymap import Keymap, action_from_keys, axes_from_motion, command_for_key, keymap_for
from reverie.input.mouse import MouseAxes
from reverie.input.net import Connection, Percentiles
from reverie.input.pacing import StepPacer, parse_rate, resolve_rate
from reverie.input.scene_images import load_scene_image
from reverie.input.window import GameWindow
from reverie.world.actions import DOOM_ACTIONS


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConfig:
    """Client settings; `max_frames` / `max_seconds` end the loop (tests, screenshots). `rate`: frames
    per second to ask for, `'game'` (the model's real-time rate), `'max'` or a number (`input.pacing`)."""

    endpoint: str = "tcp://127.0.0.1:5555"
    keymap: str | None = None
    credits: int = 1
    scale: int | None = None
    hud: bool = True
    side_by_side: bool = False
    map: str | None = None
    seed: int = 0
    record: bool = False
    policy: str = ""
    budget_bytes: int = 0
    tick_hz: float = 120.0
    rate: str | float = "game"
    max_frames: int | None = None
    max_seconds: float | None = None
    screenshot: str | None = None
    connect_timeout_s: float = 60.0
    server_timeout_s: float = 15.0
    server_key: str | None = None  # a CURVE server's public key file (`reverie serve --keys`)
    client_key: str | None = None  # this client's CURVE secret key file (None: a one-off pair)
    mouse_sensitivity: float = 1.0  # multiplies the model's declared scale of each mouse axis
    scene_images: tuple[str, ...] = ()  # what the scene key starts a new scene from, in turn (none: the server's places)
    scene_handling: str | None = None   # flush | cut | recache (None: the memory policy's)

    def __post_init__(self) -> None:
        if not 1 <= self.credits <= 2:
            raise ValueError("credits must be 1 or 2")
        if self.tick_hz <= 0:
            raise ValueError("tick_hz must be positive")
        if not self.mouse_sensitivity > 0:
            raise ValueError("mouse_sensitivity must be positive")
        parse_rate(self.rate)


class _RealGame:
    """The real game stepped on the client's actions (side-by-side mode)."""

    def __init__(self, frame_shape, game_map: str | None, seed: int, tics_per_step: int = 1):
        from reverie.world.games.doom import DoomConfig, DoomGame

        kw = {"map": game_map} if game_map else {}
        self.game = DoomGame(DoomConfig(resolution=(frame_shape[1], frame_shape[0]), tics_per_step=tics_per_step, **kw))
        self.seed = seed
        self.first = self.game.reset(seed).frame.copy()
        self.frames: dict[int, object] = {}

    def step(self, seq: int, action: int) -> None:
        self.frames[seq] = self.game.step(action).frame.copy()
        while len(self.frames) > 8:
            self.frames.pop(next(iter(self.frames)))

    def reset(self) -> None:
        self.frames.clear()
        self.game.reset(self.seed)

    def close(self) -> None:
        self.game.close()


class GameClient:
    """One window, one session. `run()` returns a summary dict when the player quits or a limit is hit."""

    def __init__(self, config: ClientConfig, *, keymap: Keymap | None = None,
                 extra_keys: Callable[[int], set[str]] | None = None):
        self.config = config
        self._keymap = keymap
        self.extra_keys = extra_keys  # tests: key names held at iteration i (get_pressed cannot be faked)
        hello = dict(credits=config.credits, seed=config.seed, record=config.record, policy=config.policy,
                     budget_bytes=config.budget_bytes, timeout_s=config.connect_timeout_s,
                     server_key=config.server_key, client_key=config.client_key)
        self.real = None
        self.conn = Connection(config.endpoint, **hello)
        self.space = self.conn.action_space
        try:
            self.keymap = keymap or keymap_for(self.space, config.keymap)
        except ValueError:
            self.conn.close()
            raise
        if config.side_by_side and self.space != DOOM_ACTIONS:
            self.conn.close()
            raise ValueError("side by side needs a model with the real game's controls (Doom's action space)")
        if config.side_by_side:  # restart the session from the real game's first frame
            self.real = _RealGame(self.conn.frame_shape, config.map, config.seed, self.conn.welcome.tics_per_step)
            self.conn.close()
            self.conn = Connection(config.endpoint, seed_frame=self.real.first, **hello)
        self.window = GameWindow(self.conn.frame_shape, panes=2 if self.real else 1, scale=config.scale,
                                 title=f"reverie - {self.conn.welcome.model}")
        if self.real:
            self.window.labels = ["real game", "neural game"]
            self.window.show(self.real.first, 0)
        try:
            self.scene_frames = [load_scene_image(p, self.conn.frame_shape) for p in config.scene_images]
        except ValueError:
            self.conn.close()
            raise
        self._scene_turn = 0
        self.pacer = StepPacer(resolve_rate(config.rate, self.conn.welcome.step_hz))
        self.show_hud = config.hud
        self.paused = False
        self.recording = config.record
        self.shown_times: deque[float] = deque(maxlen=60)
        self.key_latency = Percentiles(200)   # key change -> its frame on screen (includes waiting for a credit)
        self._last_action = self.space.noop
        self.mouse = MouseAxes()
        if any(source.startswith("mouse") for source in self.keymap.axes.values()):
            self.mouse.grab(True)
        self._change_t: int | None = None
        self._change_seq: dict[int, int] = {}
        self.frames_shown = 0
        self.note = ("", 0.0)

    # --- commands ------------------------------------------------------------------------------------
    def command(self, name: str) -> bool:
        """Apply a command; returns False to quit."""
        conn = self.conn
        if name == "quit":
            return False
        if name == "hud":
            self.show_hud = not self.show_hud
        elif name == "pause":
            self.paused = not self.paused
            conn.control("pause" if self.paused else "resume")
        elif name == "reset":
            conn.control("reset")
            if self.real:
                self.real.reset()
        elif name == "record":
            conn.control("record", not self.recording)
            self.recording = not self.recording
        elif name == "flush":
            conn.control("flush")
        elif name == "scene":
            frame = None
            if self.scene_frames:
                frame = self.scene_frames[self._scene_turn % len(self.scene_frames)]
                self._scene_turn += 1
            conn.scene(frame, handling=self.config.scene_handling)
            where = f"image {self._scene_turn}" if frame is not None else "the server's next place"
            self._say(f"new scene from {where} ({self.config.scene_handling or 'the policy decides'})")
        elif name == "grab":
            self._say("mouse grabbed (G releases)" if self.mouse.toggle() else "mouse released (G grabs)")
        elif name == "policy":
            policies = list(conn.welcome.policies) or [conn.welcome.policy]
            current = conn.stats.get("policy") or conn.welcome.policy
            nxt = policies[(policies.index(current) + 1) % len(policies)] if current in policies else policies[0]
            conn.control("policy", nxt)
            self._say(f"policy -> {nxt}")
        return True

    def _say(self, text: str) -> None:
        self.note = (text, time.monotonic() + 3.0)

    # --- loop ----------------------------------------------------------------------------------------
    def _hud(self) -> list[str] | None:
        if not self.show_hud:
            return None
        fps = 0.0
        if len(self.shown_times) > 1:
            fps = (len(self.shown_times) - 1) / max(1e-9, self.shown_times[-1] - self.shown_times[0])
        note = self.note[0] if time.monotonic() < self.note[1] else ""
        key = (self.key_latency.p(50), self.key_latency.p(95)) if self.key_latency.samples else None
        return hud_lines(fps=fps, target_fps=self.pacer.hz, latency_p50=self.conn.latency.p(50),
                         latency_p95=self.conn.latency.p(95), key_latency=key, stats=self.conn.stats, recording=self.recording, paused=self.paused,
                         extra=note)

    def _send_if_due(self, i: int) -> None:
        """Poll the held keys; send their action if a credit is free (and step the real game with it)."""
        held = self.window.pressed_keys(self.keymap.keys)
        if self.extra_keys is not None:
            held |= self.extra_keys(i)
        keys = action_from_keys(held, self.keymap, self.space)
        if keys != self._last_action:
            self._last_action, self._change_t = keys, time.monotonic_ns()
        now = time.monotonic()
        if not self.paused and self.conn.can_send() and self.pacer.due(now):
            self.pacer.sent(now)
            action = keys
            if self.space.axes:  # the mouse motion since the last action goes with the keys
                axes = axes_from_motion(self.mouse.take(), self.keymap, self.space, self.config.mouse_sensitivity)
                action = action_from_keys(held, self.keymap, self.space, axes)
            seq = self.conn.send_action(action)
            if self._change_t is not None:
                self._change_seq[seq], self._change_t = self._change_t, None
            if self.real:
                self.real.step(seq, action)

    def run(self) -> dict:
        cfg, conn, win = self.config, self.conn, self.window
        tick = 1.0 / cfg.tick_hz
        t_start = time.monotonic()
        i = 0
        running = True
        try:
            while running:
                t_tick = time.monotonic()
                for event in pygame.event.get():
                    self.mouse.on_event(event)
                    if event.type == pygame.QUIT:
                        running = False
                    elif event.type == pygame.KEYDOWN:
                        cmd = command_for_key(pygame.key.name(event.key), self.keymap)
                        if cmd is not None:
                            running = self.command(cmd) and running
                self._send_if_due(i)
                left = tick - (time.monotonic() - t_tick)
                if self.conn.can_send() and not self.paused:  # wake when the next action is due
                    left = min(left, self.pacer.seconds_until_due(time.monotonic()))
                wait_ms = max(0, int(left * 1000))
                frame = conn.poll(wait_ms)
                if frame is not None:
                    pygame.event.pump()   # fresh key state: the next action goes out before we draw
                    self._send_if_due(i)
                    win.show(frame.pixels, len(win.panes) - 1)
                    if self.real and frame.header.seq in self.real.frames:
                        win.show(self.real.frames[frame.header.seq], 0)
                    self.recording = frame.header.recording
                if frame is not None or i % 15 == 0:
                    win.present(self._hud())
                if frame is not None:
                    conn.mark_shown(frame)
                    t_key = self._change_seq.pop(frame.header.seq, None)
                    if t_key is not None:
                        self.key_latency.add((time.monotonic_ns() - t_key) / 1e6)
                    if len(self._change_seq) > 64:
                        self._change_seq.clear()
                    self.shown_times.append(time.monotonic())
                    self.frames_shown += 1
                while conn.errors:
                    self._say(str(conn.errors.popleft()))
                if conn.closed_reason is not None:
                    raise ConnectionError(f"the server closed the session: {conn.closed_reason}")
                if time.monotonic() - conn.last_recv > cfg.server_timeout_s:
                    raise ConnectionError(f"the server at {cfg.endpoint} stopped answering "
                                          f"({cfg.server_timeout_s:.0f} s without a message)")
                conn.keepalive()
                i += 1
                if cfg.max_frames is not None and self.frames_shown >= cfg.max_frames:
                    running = False
                if cfg.max_seconds is not None and time.monotonic() - t_start > cfg.max_seconds:
                    running = False
            if cfg.screenshot:
                win.present(self._hud())
                win.screenshot(cfg.screenshot)
        finally:
            self.close()
        elapsed = time.monotonic() - t_start
        return {"frames": self.frames_shown, "seconds": elapsed, "latency_p50_ms": conn.latency.p(50),
                "latency_p95_ms": conn.latency.p(95), "key_latency_p50_ms": self.key_latency.p(50),
                "key_latency_p95_ms": self.key_latency.p(95), "key_changes": len(self.key_latency.samples),
                "iterations": i, "rate_hz": self.pacer.hz}

    def close(self) -> None:
        if self.mouse.grabbed:
            self.mouse.grab(False)
        self.conn.close()
        if self.real:
            self.real.close()
        self.window.close()
