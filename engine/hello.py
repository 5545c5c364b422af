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


def check_hello(msg: P.Hello, extra, *, spec, default_policy: str, default_budget: int | None,
                footprint: Callable[[str, int | None], Footprint],
                default_seed_frame: Callable[[tuple], np.ndarray]) -> SessionRequest:
    """A `SessionRequest` for `msg` with payload parts `extra`, or `ProtocolError`.

    `footprint(policy, budget_bytes)` prices the session; `default_seed_frame(shape)` gives the start frame
    when the hello brings none (and may have none to give)."""
    if msg.credits < 1:
        raise P.ProtocolError("bad_field", "credits must be >= 1")
    if len(extra) > 1 or (msg.seed_frame and len(extra) != 1):
        raise P.ProtocolError("malformed", "a hello carries at most one seed frame part")
    if msg.seed_frame or extra:
        shape = P.frame_shape(msg.seed_frame) if msg.seed_frame else ()
        if tuple(shape) != tuple(spec.frame_shape):
            raise P.ProtocolError("bad_field", f"seed frame must be {list(spec.frame_shape)}")
        buf = extra[0].buffer
        if len(buf) != int(np.prod(shape)):
            raise P.ProtocolError("bad_field", f"seed frame part has {len(buf)} bytes, expected {int(np.prod(shape))}")
        seed_frame = np.frombuffer(buf, np.uint8).reshape(shape)
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
                          record=msg.record, seed_frame=seed_frame, footprint=price)
