"""The game window: model-resolution frames scaled up by SDL, one or two panes, and the HUD.

Frames arrive as uint8 `[H, W, 3]`; `pygame.image.frombuffer` wraps their bytes without a copy and
`pygame.transform.scale` writes the nearest-neighbour upscale into a preallocated pane surface (no PIL, no
per-frame numpy work). The display is opened with `pygame.SCALED`, so the OS window can be resized on top.
Two panes show the real game (left) and the neural game (right) side by side.
"""

from __future__ import annotations

import warnings

import numpy as np
import pygame

from reverie.input.hud import draw_hud


def default_scale(frame_shape, target_width: int = 640) -> int:
    return max(1, target_width // int(frame_shape[1]))


class GameWindow:
    """A window with `panes` frame panes of `frame_shape` scaled by `scale`, plus a HUD."""

    def __init__(self, frame_shape, *, panes: int = 1, scale: int | None = None, title: str = "reverie",
                 vsync: bool = False):
        pygame.display.init()
        pygame.font.init()
        h, w = int(frame_shape[0]), int(frame_shape[1])
        self.scale = scale or default_scale(frame_shape)
        self.frame_size = (w, h)
        self.pane_size = (w * self.scale, h * self.scale)
        self.size = (self.pane_size[0] * panes, self.pane_size[1])
        pygame.display.set_caption(title)
        with warnings.catch_warnings():  # SDL's dummy driver (headless) has no accelerated renderer
            warnings.filterwarnings("ignore", "no fast renderer")
            self.screen = pygame.display.set_mode(self.size, pygame.SCALED, vsync=int(vsync))
        # panes share the pixel format of `frombuffer(..., "RGB")` surfaces, as `transform.scale` requires
        rgb = pygame.image.frombuffer(bytes(w * h * 3), (w, h), "RGB")
        self.panes = [pygame.Surface(self.pane_size, 0, rgb) for _ in range(panes)]
        self.font = pygame.font.Font(None, max(14, min(24, self.pane_size[1] // 20)))
        self.label_font = pygame.font.Font(None, 20)
        self.labels: list[str] = []
        self._codes: dict[str, int | None] = {}

    def show(self, frame: np.ndarray, pane: int = 0) -> None:
        """Scale `frame` (uint8 `[H, W, 3]`, any buffer) into pane `pane` (drawn on the next `present`)."""
        if frame.shape[:2] != (self.frame_size[1], self.frame_size[0]):
            raise ValueError(f"frame is {frame.shape}, the window shows {self.frame_size[1]}x{self.frame_size[0]}")
        src = pygame.image.frombuffer(np.ascontiguousarray(frame), self.frame_size, "RGB")
        pygame.transform.scale(src, self.pane_size, self.panes[pane])

    def present(self, hud: list[str] | None = None) -> None:
        """Blit the panes, the pane labels and the HUD, then flip."""
        for i, surf in enumerate(self.panes):
            self.screen.blit(surf, (i * self.pane_size[0], 0))
            if i < len(self.labels) and self.labels[i]:
                text = self.label_font.render(self.labels[i], True, (255, 255, 0))
                self.screen.blit(text, (i * self.pane_size[0] + 6, self.pane_size[1] - text.get_height() - 4))
        if hud:
            draw_hud(self.screen, hud, self.font)
        pygame.display.flip()

    def pressed_keys(self, names) -> set[str]:
        """Which of the key names `names` are held now (polled, not from events)."""
        state = pygame.key.get_pressed()
        return {name for name in names if (code := self._code(name)) is not None and state[code]}

    def _code(self, name: str) -> int | None:
        if name not in self._codes:
            try:
                self._codes[name] = pygame.key.key_code(name)
            except ValueError:  # a key name this keyboard layout does not know: never held
                self._codes[name] = None
        return self._codes[name]

    def screenshot(self, path) -> None:
        pygame.image.save(self.screen, str(path))

    def close(self) -> None:
        pygame.display.quit()
