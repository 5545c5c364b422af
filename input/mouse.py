"""The mouse as a model's axes: relative motion accumulated between actions while the mouse is grabbed.

When a model declares axes read from `mouse_x` / `mouse_y`, the client grabs the mouse in relative mode
(cursor hidden, motion unbounded by the window's edge); the `grab` command (G by default) releases it and
shows the cursor, and grabs it again. Motion events add up until the next action is sent, so no motion is
lost when the client waits for a credit; `take()` hands the sum over and starts again. While released, the
mouse moves nothing.
"""

from __future__ import annotations

import pygame


class MouseAxes:
    """Accumulates relative mouse motion (pixels) for the next action."""

    def __init__(self) -> None:
        self.grabbed = False
        self._dx = 0.0
        self._dy = 0.0

    def grab(self, on: bool) -> None:
        """Grab (relative mode, hidden cursor) or release the mouse; motion held so far is dropped."""
        self.grabbed = bool(on)
        if hasattr(pygame.mouse, "set_relative_mode"):  # pygame-ce
            pygame.mouse.set_relative_mode(self.grabbed)
        else:
            pygame.event.set_grab(self.grabbed)
            pygame.mouse.set_visible(not self.grabbed)
        self._dx = self._dy = 0.0

    def toggle(self) -> bool:
        self.grab(not self.grabbed)
        return self.grabbed

    def on_event(self, event) -> None:
        """Feed every pygame event; MOUSEMOTION adds its relative motion while grabbed."""
        if event.type == pygame.MOUSEMOTION and self.grabbed:
            dx, dy = event.rel
            self._dx += dx
            self._dy += dy

    def take(self) -> dict[str, float]:
        """Motion since the last `take`, by source (`mouse_x`, `mouse_y`), and start again."""
        out = {"mouse_x": self._dx, "mouse_y": self._dy}
        self._dx = self._dy = 0.0
        return out
