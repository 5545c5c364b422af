"""A rollout writer on its own thread, so a real-time loop only pays for a queue put.

    w = BackgroundRolloutWriter(out_dir, meta)      # same arguments as RolloutWriter
    w.append(frame, action, pose, t_server_end_ns=...)   # returns at once; the frame is copied
    w.close()                                       # drains the queue, finalises, writes the preview

Errors raised on the writer thread are re-raised by the next `append` or by `close`.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from engine.rollout.writer import RolloutWriter

_CLOSE = object()


class BackgroundRolloutWriter:
    """`RolloutWriter` behind a bounded queue and one thread. `max_pending` steps may wait in the queue;
    when it is full `append` blocks (recording never silently drops steps)."""

    def __init__(self, out_dir, meta, *, max_pending: int = 256, **writer_kw) -> None:
        self._writer = RolloutWriter(out_dir, meta, **writer_kw)
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._summary: dict | None = None
        self._thread = threading.Thread(target=self._run, name="rollout-writer", daemon=True)
        self._thread.start()

    @property
    def dir(self):
        return self._writer.dir

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _CLOSE:
                return
            if self._error is not None:
                continue
            args, kw = item
            try:
                self._writer.append(*args, **kw)
            except BaseException as exc:  # keep draining; report on the caller's thread
                self._error = exc

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"rollout writer failed: {self._error}") from self._error

    def append(self, frame, action, pose=None, **kw) -> None:
        """Queue one step (see `RolloutWriter.append`). The frame is copied, so the caller may reuse it."""
        self._raise_pending()
        self._queue.put(((np.array(frame, dtype=np.uint8, copy=True), int(action), pose), kw))

    def close(self, preview: bool = True, **kw) -> dict:
        """Wait for queued steps, then finalise the rollout (and preview) on the caller's thread."""
        if self._summary is not None:
            return self._summary
        self._queue.put(_CLOSE)
        self._thread.join()
        if self._error is not None:
            self._writer.abort()
            self._raise_pending()
        self._summary = self._writer.close(preview=preview, **kw)
        return self._summary

    def __enter__(self) -> "BackgroundRolloutWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._queue.put(_CLOSE)
            self._thread.join()
            self._writer.abort()
