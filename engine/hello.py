"""A hello, checked in full before anything is built.

`check_hello` turns a decoded `Hello` (and its payload parts) into a `SessionRequest` or raises the
`ProtocolError` the client gets back. It is cheap (no allocation beyond the message, no model call): the
parts and fields, the seed frame's shape and size, and the session's memory footprint, which resolves the
policy and plans the budget exactly as the memory will (an unknown policy or a budget the policy cannot
fit is refused here). The server then checks admission and the rate limits, and only then builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from reverie.engine import protocol as P
from reverie.memory.footprint import Footprint


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What a valid hello asks for. `seed_frame`: uint8 `[H, W, 3]`, a view of the hello's pixels part or
    the server's own frame (the session copies it)."""

    policy: str
    budget_bytes: int | None
    credits: int
    seed: int
    record: bool
    seed_frame: np.ndarray
    footprint: Footprint
    history: np.ndarray | None = None   # uint8 [n, H, W, 3] committed after the seed frame (a resume)
    history_actions: tuple = ()         # their action values


def check_hello(msg: P.Hello, extra, *, spec, default_policy: str, default_budget: int | None,
                footprint: Callable[[str, int | None], Footprint],
                default_seed_frame: Callable[[tuple], np.ndarray]) -> SessionRequest:
    """A `SessionRequest` for `msg` with payload parts `extra`, or `ProtocolError`.

    `footprint(policy, budget_bytes)` prices the session; `default_seed_frame(shape)` gives the start frame
    when the hello brings none (and may have none to give)."""
    if msg.credits < 1:
        raise P.ProtocolError("bad_field", "credits must be >= 1")
    if msg.history and not msg.seed_frame:
        raise P.ProtocolError("malformed", "a hello with history needs its seed frame")
    parts = 1 + max(0, msg.history)  # the seed frame, then one part per history frame
    if len(extra) > parts or (msg.seed_frame and len(extra) != parts):
        raise P.ProtocolError("malformed", "a hello carries at most a seed frame part and then one part per "
                                           "history frame")
    history, history_actions = None, ()
    if msg.history:
        history, history_actions = _history(msg, extra[1:], spec)
    if msg.seed_frame or extra:
        shape = P.frame_shape(msg.seed_frame) if msg.seed_frame else ()
        if tuple(shape) != tuple(spec.frame_shape):
            raise P.ProtocolError("bad_field", f"seed frame must be {list(spec.frame_shape)}")
        seed_frame = frame_part(extra[0], shape, "seed frame")
    else:
        try:
            seed_frame = default_seed_frame(tuple(spec.frame_shape))
        except Exception as exc:  # e.g. no real game installed to take a first frame from
            raise P.ProtocolError("refused", f"this server has no seed frame ({exc}); send one in the hello") from None
    policy = msg.policy or default_policy
    budget = msg.budget_bytes or default_budget
    try:
        price = footprint(policy, budget)
    except Exception as exc:  # e.g. memory.BudgetError, unknown policy: the client's request, not ours
        raise P.ProtocolError("refused", f"cannot start a session: {exc}") from None
    return SessionRequest(policy=policy, budget_bytes=budget, credits=msg.credits, seed=msg.seed,
                          record=msg.record, seed_frame=seed_frame, footprint=price, history=history,
                          history_actions=history_actions)


MAX_HISTORY = 256


def _history(msg: P.Hello, parts, spec) -> tuple[np.ndarray, tuple]:
    """The history parts of a hello: `msg.history` frames of the model's shape and one action each."""
    n = msg.history
    if not 0 < n <= MAX_HISTORY:
        raise P.ProtocolError("bad_field", f"history must be 1..{MAX_HISTORY} frames, got {n}")
    frames = [frame_part(p, spec.frame_shape, "each history") for p in parts]
    if len(msg.history_actions) != n:
        raise P.ProtocolError("bad_field", f"history needs one action per frame ({n}), got {len(msg.history_actions)}")
    try:
        actions = tuple(spec.action_space.coerce(a) for a in msg.history_actions)
    except ValueError as exc:
        raise P.ProtocolError("bad_field", f"history action: {exc}") from None
    return np.stack(frames), actions


def frame_part(part, shape, what: str) -> np.ndarray:
    """A payload part's pixels as uint8 `shape` (a view of the part), or `ProtocolError` when its size is not
    one frame's; `what` names the part in the error."""
    buf = part.buffer
    size = int(np.prod(shape))
    if len(buf) != size:
        raise P.ProtocolError("bad_field", f"{what} part has {len(buf)} bytes, expected one uint8 {list(shape)} "
                                           f"frame ({size} bytes)")
    return np.frombuffer(buf, np.uint8).reshape(shape)
