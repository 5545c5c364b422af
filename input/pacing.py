"""How fast the client asks for frames: at the game's own speed, at a fixed rate, or as fast as they come.

A model's frame stands for `tics_per_step` tics of the real game's 35 Hz clock, so the default model (4
tics per frame) runs at the game's speed at 8.75 frames per second. Asked for frames as fast as a server
can make them, the same world runs several times too fast on a quick machine (walking, turning and the
view bob all speed up), and the speed changes with the machine. The server says the real-time rate in
its welcome (`step_hz`); `--rate game` (the default) keeps to it, `--rate N` to N frames per second, and
`--rate max` sends whenever a frame credit is free (the throughput benchmarks do).
"""

from __future__ import annotations

RATE_CHOICES = ("game", "max")


def parse_rate(text: str | float) -> str | float:
    """`'game'`, `'max'` or a positive number of frames per second; anything else is a ValueError."""
    if isinstance(text, str) and text.strip().lower() in RATE_CHOICES:
        return text.strip().lower()
    try:
        hz = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"rate must be 'game', 'max' or frames per second, got {text!r}") from None
    if not 0.0 < hz < float("inf"):
        raise ValueError(f"rate must be a positive number of frames per second, got {text!r}")
    return hz


def resolve_rate(rate: str | float, game_hz: float) -> float | None:
    """Frames per second to keep to (None: no limit). `game_hz` is the server's real-time rate, 0 when
    the server does not say (then `'game'` sends without a limit, as older servers were played)."""
    rate = parse_rate(rate)
    if rate == "max":
        return None
    if rate == "game":
        return float(game_hz) if game_hz > 0 else None
    return float(rate)


class StepPacer:
    """Lets one action out per period, on a fixed schedule.

    The client loop wakes at its display tick, so a frame is due "about now" rather than exactly now; the
    schedule advances by whole periods from the first send, so the average rate holds without drifting
    to the loop's tick. After a stall (a slow frame, a pause) it restarts from the present instead of
    bursting to catch up, which would play the missed time at high speed.
    """

    def __init__(self, hz: float | None):
        if hz is not None and not hz > 0:
            raise ValueError(f"hz must be positive or None, got {hz}")
        self.period = 0.0 if hz is None else 1.0 / hz
        self._next: float | None = None

    @property
    def hz(self) -> float | None:
        return 1.0 / self.period if self.period else None

    def due(self, now: float) -> bool:
        return self._next is None or now >= self._next

    def sent(self, now: float) -> None:
        """Record a send at `now` (seconds, monotonic) and schedule the next one."""
        if not self.period:
            return
        nxt = (now if self._next is None else self._next) + self.period
        self._next = nxt if nxt > now else now + self.period  # late by a period or more: no catch-up burst

    def seconds_until_due(self, now: float) -> float:
        return 0.0 if self._next is None else max(0.0, self._next - now)
