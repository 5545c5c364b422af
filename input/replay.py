"""Showing a recorded rollout in the game window, at its recorded pace (no engine, no torch)."""

from __future__ import annotations

import time

import numpy as np
import pygame

from reverie.input.window import GameWindow


def replay_lines(t: int, total: int, action: str, fps: float, paused: bool) -> list[str]:
    return [f"frame {t + 1}/{total}   {fps:.0f} fps" + ("   PAUSED" if paused else ""), f"action {action}"]


def play_frames(frames: np.ndarray, actions: list[str], *, fps: float, scale: int | None = None,
                hud: bool = True, max_frames: int | None = None, screenshot: str | None = None,
                loop: bool = False, title: str = "reverie replay") -> int:
    """Show uint8 `[T, H, W, 3]` frames; Space pauses, Left/Right step when paused, H toggles the HUD, Esc
    quits. Returns the number of frames shown."""
    if len(frames) == 0:
        return 0
    win = GameWindow(frames.shape[1:], scale=scale, title=title)
    period = 1.0 / fps
    shown, t, paused, running = 0, 0, False, True
    next_time = time.monotonic()
    try:
        while running:
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                    running = False
                elif event.type == pygame.KEYDOWN and event.key == pygame.K_SPACE:
                    paused = not paused
                elif event.type == pygame.KEYDOWN and event.key in (pygame.K_h, pygame.K_F1):
                    hud = not hud
                elif event.type == pygame.KEYDOWN and paused and event.key in (pygame.K_LEFT, pygame.K_RIGHT):
                    t = (t + (1 if event.key == pygame.K_RIGHT else -1)) % len(frames)
            win.show(frames[t])
            win.present(replay_lines(t, len(frames), actions[t], fps, paused) if hud else None)
            shown += 1
            if max_frames is not None and shown >= max_frames:
                break
            if not paused:
                t += 1
                if t >= len(frames):
                    if not loop:
                        break
                    t = 0
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))
        if screenshot:
            win.screenshot(screenshot)
    finally:
        win.close()
    return shown
