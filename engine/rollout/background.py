"""A rollout writer on its own thread, so a real-time loop only pays for a queue put.

    w = BackgroundRolloutWriter(out_dir, meta)      # same arguments as RolloutWriter
    w.append(frame, action, pose, t_server_end_ns=...)   # returns at once; the frame is copied
    w.close()                                       # drains the queue, finalises, writes the preview
    w.close(wait=False)                             # the same, finished on the thread (see `running`)

Appending and finalising (frames.npy, meta.json, the preview) both happen on the writer thread. An error
there is logged, stops further writing (what is on disk stays a readable prefix) and is re-raised by the
next `append` or by a waiting `close`; `error` holds it. This is the one background writer: the session
`engine.recorder.Recorder` writes through it.
"""

from __future__ import annotations

import logging
import queue
import threading

import numpy as np

from reverie.engine.rollout.writer import ClosingOnExit, RolloutWriter

log = logging.getLogger("reverie.rollout")


class BackgroundRolloutWriter(ClosingOnExit):
    """`RolloutWriter` behind a bounded queue and one thread. `max_pending` steps may wait in the queue;
    when it is full `append` blocks (recording never silently drops steps). `copy_frames=False` queues the
    caller's frame arrays as they are (for callers that never write to them again)."""

    def __init__(self, out_dir, meta, *, max_pending: int = 256, copy_frames: bool = True, **writer_kw) -> None:
        self._writer = RolloutWriter(out_dir, meta, **writer_kw)
        self._copy = copy_frames
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._closing = False
        self.error: BaseException | None = None
        self.summary: dict | None = None
        self._thread = threading.Thread(target=self._run, name=f"rollout-writer:{self._writer.dir.name}",
                                        daemon=True)
        self._thread.start()

    @property
    def dir(self):
        return self._writer.dir

    @property
    def meta(self):
        return self._writer.meta

    @meta.setter
    def meta(self, meta) -> None:
        """Replace the metadata `close` writes (set it before `close`)."""
        self._writer.meta = meta

    @property
    def running(self) -> bool:
        """Whether the thread is still writing or finalising."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            kind, args, kw = self._queue.get()
            try:
                if kind == "append":
                    if self.error is None:
                        self._writer.append(*args, **kw)
                    continue
                if kind == "close" and self.error is None:
                    self.summary = self._writer.close(**kw)
                else:
                    self._writer.abort()
            except BaseException as exc:  # keep what is on disk readable; report on the caller's thread
                self.error = exc
                log.exception("writing the rollout %s failed", self.dir)
                self._writer.abort()
                if kind == "append":
                    continue
            return

    def _raise_pending(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"rollout writer failed: {self.error}") from self.error

    def append(self, frame, action, pose=None, **kw) -> None:
        """Queue one step (see `RolloutWriter.append`). The frame is copied (unless `copy_frames=False`),
        so the caller may reuse it."""
        self._raise_pending()
        if self._closing:
            raise RuntimeError("append() after close()")
        frame = np.array(frame, dtype=np.uint8, copy=True) if self._copy else frame
        self._queue.put(("append", (frame, action, pose), kw))

    def close(self, preview: bool = True, *, wait: bool = True, timeout: float | None = None, **kw) -> dict | None:
        """Finish: the queued steps are written, then the rollout (and preview) finalised, on the thread.
        With `wait`, wait for that (up to `timeout` seconds) and re-raise a writer error. Returns the
        summary (None while still finishing). Calling it again only waits."""
        if not self._closing:
            self._closing = True
            self._queue.put(("close", (), {"preview": preview, **kw}))
        if wait:
            self._thread.join(timeout)
            self._raise_pending()
        return self.summary

    def abort(self) -> None:
        """Stop without finalising: what is queued before this is written, then the rollout is left
        readable and partial (`RolloutWriter.abort`); waits for the thread."""
        if not self._closing:
            self._closing = True
            self._queue.put(("abort", (), {}))
        self._thread.join()
