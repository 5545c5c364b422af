"""Touching the host archive's pages ahead of its writer, off the frame path.

The spatial archive (`memory.spatial.FrameArchive`) is allocated uninitialised: zeroing tens of MB when a
session is built stalled other players' frames (the server builds sessions between frames). Its pages are
then faulted in by the frame loop the first time each ring slot is written: about 0.4 ms per frame over a
session's first `capacity` frames. `Prefaulter` moves that cost to one shared background thread, which
zeroes the next few slots just ahead of each archive's writer. Only slots the writer has not reached are
touched, under the archive's lock, so a written slot is never overwritten; a session that generates no
frames costs nothing. Torch releases the interpreter lock while it zeroes, so the work overlaps the frame
loop on another core.
"""

from __future__ import annotations

import queue
import threading
import weakref

import torch

AHEAD = 8  # slots kept touched ahead of each archive's writer


class Prefaulter:
    """One daemon thread; `request(archive, upto)` asks it to touch the archive's slots below `upto`."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def request(self, archive, upto: int) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="reverie-prefault", daemon=True)
                    self._thread.start()
        self._jobs.put((weakref.ref(archive), upto))

    def _run(self) -> None:
        while True:
            ref, upto = self._jobs.get()
            archive = ref()
            if archive is not None:
                with torch.inference_mode():  # an archive built inside inference mode holds inference tensors
                    archive.touch_ahead(upto)
            del archive


PREFAULTER = Prefaulter()
