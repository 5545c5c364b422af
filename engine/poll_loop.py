"""`PollLoop`: the shape of reverie's single-threaded ZeroMQ services (the server and the cluster gateway).

`run_once(poll_ms)` waits up to `poll_ms` for messages and handles what arrived; `serve_forever` repeats it
until `stop()` (safe from a signal handler), then `close()`s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class PollLoop(ABC):
    _stop = False
    POLL_MS = 50  # the longest an idle loop waits for a message

    def stop(self) -> None:
        """Ask the loop to finish after the current iteration (safe from a signal handler)."""
        self._stop = True

    def serve_forever(self, poll_ms: int | None = None) -> None:
        import gc

        from reverie.engine.heap import settle_heap

        settle_heap()  # the models are loaded: keep full garbage collections out of the frame loop
        try:
            while not self._stop:
                self.run_once(self.POLL_MS if poll_ms is None else poll_ms)
        finally:
            self.close()
            gc.unfreeze()  # what was frozen for the loop can be collected again

    @abstractmethod
    def run_once(self, poll_ms: int) -> None:
        """Handle what arrives within `poll_ms` (and whatever work is due)."""

    @abstractmethod
    def close(self) -> None:
        """Release sockets and sessions."""
