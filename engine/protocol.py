"""The wire protocol between the engine server and its clients (MessagePack, no pickle).

A message is one ZeroMQ multipart message. Part 0 is a MessagePack map, the *header*: `k` names the
kind, `v` the protocol major version, the other keys are the kind's fields below. A frame carries its
pixels as part 1, raw uint8 bytes `H x W x 3` (sent zero-copy); a hello may carry a seed frame the same
way. The server's ROUTER adds the client's routing id in front; clients never see it.

Version 2 (this one) carries structured actions (buttons and axes a model declares); a version-1 client,
which sends only Doom action indices and knows no `controls`, is refused with a `version` error.

Schema evolution inside one major version: new fields are appended with defaults; unknown fields are
ignored; missing fields take their defaults; a field of the wrong type, an unknown kind, a header over
`MAX_HEADER_BYTES`, or another major version is a `ProtocolError` whose `code` the server sends back in
an `error` message (and counts).

Kinds (direction):
    hello    (c->s)  open a session: client name, credits, policy, budget, seed, record, seed frame, and
                     optionally frames to commit after it as history (a session resumed elsewhere)
    welcome  (s->c)  the session: id, model, frame shape, the model's action space (`controls`, as
                     `ActionSpace.describe` gives it; `actions`: the names of an index space), policy,
                     budget, the bytes reserved for it and the server's total
    action   (c->s)  one frame's action: an index of an index space, or a map {"buttons": [names],
                     "axes": [values] or {name: value}} (any space); grants one credit; echoes when the
                     previous frame was shown
    frame    (s->c)  one generated frame (part 1 = pixels) with its timestamps and pose
    control  (c->s)  pause, resume, reset, seed, policy, budget, flush, scene, record, stats, bye; a scene
                     (a new place mid-session, `engine.scene_request`) may carry its frame as part 1
    stats    (s->c)  session and server statistics (memory stats, fps, counters)
    error    (s->c)  what was wrong with a message; the session, if any, keeps running. Codes: malformed,
                     oversize, version, unknown_kind, bad_field, no_session, unexpected, refused (does not
                     fit: memory, slots, policy), rate_limited (sessions started too often; retry later),
                     internal, engine
    bye      (both)  the session is closed
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

PROTO_VERSION = 2
MAX_HEADER_BYTES = 8192
MAX_STR = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

CONTROL_OPS = ("pause", "resume", "reset", "seed", "policy", "budget", "flush", "scene", "record", "stats", "bye")


class ProtocolError(ValueError):
    """A message that cannot be accepted; `code` is a short machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# --- message kinds -------------------------------------------------------------------------------------
# Every field has a default so that a missing field is never an error. Types are checked on decode.


@dataclass(frozen=True, slots=True)
class Hello:
    client: str = ""
    credits: int = 1            # frames the client allows in flight (1-2; latest frame, never a backlog)
    policy: str = ""            # memory policy ("" = the server's default)
    budget_bytes: int = 0       # KV budget for this session (0 = the server's default)
    seed: int = 0
    record: bool = False        # record this session from its first frame
    seed_frame: list = field(default_factory=list)  # [H, W, 3] of the seed frame in part 1, or []
    history: int = 0            # frames shown after the seed frame, in parts 2.. (one H x W x 3 each), committed
    history_actions: list = field(default_factory=list)  # ... as context: their actions, wire form (a resume)


@dataclass(frozen=True, slots=True)
class Welcome:
    session: str = ""
    model: str = ""
    frame_shape: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    controls: dict = field(default_factory=dict)  # the model's ActionSpace.describe()
    policy: str = ""
    budget_bytes: int = 0
    policies: list = field(default_factory=list)
    chunk_frames: int = 1       # latent frames per chunk ...
    frames_per_latent: int = 1  # ... of this many frames each (a chunk is chunk_frames x frames_per_latent)
    tics_per_step: int = 1      # real-game tics per frame (side-by-side steps the real game this much)
    step_hz: float = 0.0        # frames per second at which the model runs at the game's speed (0: unknown)
    session_bytes: int = 0      # every byte reserved for this session (KV cache, archive, buffers)
    total_budget_bytes: int = 0  # what all the server's sessions may hold together


@dataclass(frozen=True, slots=True)
class Action:
    seq: int = 0
    action: Any = 0             # an index, or {"buttons": [...], "axes": [...] | {...}}; checked by the server
    t_client_ns: int = 0        # when the client polled the keys and sent this action
    shown_seq: int = -1         # the last frame the client displayed ...
    t_shown_ns: int = 0         # ... and when


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int = 0                # the action seq this frame answers
    index: int = 0              # frame index in the session
    action: Any = 0             # the action it was made with, in the wire form
    shape: list = field(default_factory=list)
    dtype: str = "uint8"
    t_client_ns: int = 0        # echo of the action's send time
    t_start_ns: int = 0         # server started / finished generating
    t_end_ns: int = 0
    pose: list = field(default_factory=list)
    kv_bytes: int = 0
    recording: bool = False


@dataclass(frozen=True, slots=True)
class Control:
    op: str = ""
    value: Any = None


@dataclass(frozen=True, slots=True)
class Stats:
    data: dict = field(default_factory=dict)


def fit_text(text: str) -> str:
    """`text` cut to what a protocol string may hold (`MAX_STR`; a longer one is refused on decode)."""
    return text if len(text) <= MAX_STR else text[: MAX_STR - 3] + "..."


@dataclass(frozen=True, slots=True)
class Error:
    code: str = ""
    message: str = ""           # free text, cut to MAX_STR when built, so an explanation never breaks a reply
    seq: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", fit_text(self.message))


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str = ""            # free text, cut to MAX_STR when built

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", fit_text(self.reason))


KINDS: dict[str, type] = {
    "hello": Hello, "welcome": Welcome, "action": Action, "frame": Frame, "control": Control,
    "stats": Stats, "error": Error, "bye": Bye,
}
_KIND_OF = {cls: name for name, cls in KINDS.items()}
_TYPES = {int: (int,), float: (int, float), str: (str,), bool: (bool,), list: (list, tuple), dict: (dict,)}


def _field_types(cls: type) -> dict[str, Any]:
    hints = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict, "Any": Any}
    return {f.name: hints[f.type] for f in fields(cls)}


_SCHEMA = {cls: _field_types(cls) for cls in KINDS.values()}


def _check(kind: str, name: str, value: Any, typ: Any) -> Any:
    if typ is Any:
        return value
    ok = isinstance(value, _TYPES[typ]) and not (typ in (int, float) and isinstance(value, bool))
    if not ok:
        raise ProtocolError("bad_field", f"{kind}.{name} must be {typ.__name__}, got {type(value).__name__}")
    if typ is int and not INT64_MIN <= value <= INT64_MAX:
        raise ProtocolError("bad_field", f"{kind}.{name} is out of range")
    if typ is str and len(value) > MAX_STR:
        raise ProtocolError("bad_field", f"{kind}.{name} is longer than {MAX_STR} characters")
    if typ is list:
        return list(value)
    return value


def encode(msg: Any) -> bytes:
    """Header bytes of a message (a dataclass above)."""
    kind = _KIND_OF[type(msg)]
    body = {f.name: getattr(msg, f.name) for f in fields(msg)}
    return msgpack.packb({"k": kind, "v": PROTO_VERSION, **body}, use_bin_type=True)


def decode(raw: bytes | memoryview, limit: int = MAX_HEADER_BYTES) -> Any:
    """Parse and validate a header; raises `ProtocolError` (never anything else) on bad input.

    `limit` caps the header size (clients allow the server's stats messages more room)."""
    if len(raw) > limit:
        raise ProtocolError("oversize", f"header of {len(raw)} bytes is over the {limit}-byte limit")
    try:
        obj = msgpack.unpackb(bytes(raw), raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several types (ExtraData, FormatError, StackError, ValueError ...)
        raise ProtocolError("malformed", f"not a MessagePack header: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", f"header must be a map, got {type(obj).__name__}")
    version = obj.get("v", PROTO_VERSION)
    if version != PROTO_VERSION or isinstance(version, bool):
        raise ProtocolError("version", f"protocol version {version!r} is not supported: this side speaks "
                                       f"{PROTO_VERSION} (structured actions); update the client or server")
    kind = obj.get("k")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("unknown_kind", f"unknown message kind {kind!r}; kinds are {sorted(KINDS)}")
    values = {}
    for name, typ in _SCHEMA[cls].items():
        if name in obj:
            values[name] = _check(kind, name, obj[name], typ)
    return cls(**values)


def frame_shape(shape: list, limit: int = 4096) -> tuple[int, int, int]:
    """Validate an `[H, W, 3]` shape carried in a header."""
    if (len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
            or shape[2] != 3 or not (0 < shape[0] <= limit and 0 < shape[1] <= limit)):
        raise ProtocolError("bad_field", f"frame shape must be [H, W, 3] with 0 < H, W <= {limit}, got {shape!r}")
    return int(shape[0]), int(shape[1]), 3
