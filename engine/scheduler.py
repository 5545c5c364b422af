"""Sharing one device between sessions: admission against a total memory budget, and round-robin turns.

Admission is two-phase so a refused session disturbs nothing: `can_admit(nbytes)` answers (and says why
not) before any memory is allocated (the server reserves everything a session holds,
`memory.session_bytes`); `admit(sid, nbytes)` reserves after the session was built. Budgets
can change live (`resize`, same rule) and are freed on `release`.

The scheduler gives each ready session one chunk per turn, in a fixed rotation, so a session that always
has an action waiting cannot starve the others.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class AdmissionError(RuntimeError):
    """A session cannot be admitted (or resized) within the total memory budget."""


class Admission:
    """Byte reservations against `total_bytes` (None = unlimited, still tracked)."""

    def __init__(self, total_bytes: int | None, max_sessions: int = 64):
        if total_bytes is not None and total_bytes <= 0:
            raise ValueError("total_bytes must be positive (or None for no limit)")
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        self.total_bytes = total_bytes
        self.max_sessions = max_sessions
        self._held: dict[Hashable, int] = {}

    @property
    def reserved_bytes(self) -> int:
        return sum(self._held.values())

    @property
    def free_bytes(self) -> int | None:
        return None if self.total_bytes is None else self.total_bytes - self.reserved_bytes

    def can_admit(self, nbytes: int, sid: Hashable | None = None) -> tuple[bool, str]:
        """Whether `nbytes` more (or, for a held `sid`, a new size of `nbytes`) fits; and why not."""
        if nbytes < 0:
            return False, f"a budget cannot be negative ({nbytes})"
        if sid not in self._held and len(self._held) >= self.max_sessions:
            return False, f"the server already runs its maximum of {self.max_sessions} sessions"
        if self.total_bytes is None:
            return True, ""
        free = self.total_bytes - self.reserved_bytes + self._held.get(sid, 0)
        if nbytes > free:
            return False, (f"a session needs {_mb(nbytes)} (KV cache, archive, buffers) but only "
                           f"{_mb(max(free, 0))} of the server's {_mb(self.total_bytes)} are free; ask for a "
                           f"smaller budget or try later")
        return True, ""

    def admit(self, sid: Hashable, nbytes: int) -> None:
        ok, why = self.can_admit(nbytes, sid)
        if not ok:
            raise AdmissionError(why)
        self._held[sid] = int(nbytes)

    resize = admit

    def release(self, sid: Hashable) -> None:
        self._held.pop(sid, None)


def _mb(nbytes: int) -> str:
    return f"{nbytes:,} bytes ({nbytes / 2**20:.1f} MiB)"


class RoundRobin(Generic[K]):
    """Fair turns over a changing set of keys: `next(ready)` returns the ready key after the last served."""

    def __init__(self) -> None:
        self._order: OrderedDict[K, None] = OrderedDict()

    def add(self, key: K) -> None:
        self._order[key] = None

    def remove(self, key: K) -> None:
        self._order.pop(key, None)

    def __len__(self) -> int:
        return len(self._order)

    def next(self, ready) -> K | None:
        """The first key in rotation order with `ready(key)` true, which then moves to the back."""
        for key in list(self._order):
            if ready(key):
                self._order.move_to_end(key)
                return key
        return None
