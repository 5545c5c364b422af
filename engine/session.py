"""One player's game: a shared model, the session's own memory, and its recorder.

`Session.step(action)` returns the next frame (uint8 `[H, W, 3]`) for one per-frame action. When a chunk
makes `n = spec.frames_per_chunk > 1` frames (`chunk_frames` latent frames of `frames_per_latent` frames
each), the session generates them at once with the action of the step that started the chunk held for all
`n` (the lowest latency a player can get from a chunked model) and hands them out one per `step`;
`generate` / `predict` take all `n` per-frame actions, for runs whose actions are known ahead.

A session starts from a seed frame: the frame is encoded and committed to memory (the clean pass, no
denoising), so the first generated frame already has context; `observe` commits further known frames
(e.g. real game frames) the same way. `reset` goes back to that state; `seed`
changes the noise seed; `set_policy` / `set_budget` rebuild the memory and re-commit the last few frames
(a recache, `rebuild_memory`: the one recache path), so the game goes on under the new policy without a
cut; `flush` forwards the memory event; `scene` starts a new scene from another frame, flushing, cutting
or re-caching what the memory holds of the old one (`memory.events`).

The session is the one chunk loop: play, recording and regeneration (`engine.replay`), `reverie rollout`,
salience training and every bench drive sessions. What benches need beyond `step` / `observe`:

* `generate(actions)`: one chunk for per-frame actions, returned whole (`ChunkResult`: latents, frames,
  poses) instead of frame by frame;
* `predict(actions)`: the next chunk sampled but not committed (teacher forcing: score it, then `observe`
  the real frames);
* `memory_factory`: may return any object with the memory API, such as a wrapper around a real memory
  (the memory bench's shadow mode, a probe of positions, a tap of committed keys);
* `pose_source`: the pose the memory retrieves by (e.g. the real game's), instead of the model's dead
  reckoning;
* `seed_action`: the action committed with the seed frame (a session that starts mid-episode);
* `fork()`: an independent copy of the session's state on the same model (what-if runs).
"""

from __future__ import annotations

import copy
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch

from reverie.engine.sampler import FrameContext, commit_frames, generate_chunk, sample_chunk
from reverie.memory.events import SCENE_HANDLINGS, MemoryEvent
from reverie.memory.footprint import RECACHE_CHUNKS
from reverie.world.actions import ActionValue
from reverie.world.contract import WorldModel
from reverie.world.pose import advance_pose


class MemoryLike(Protocol):
    """What the session needs from `memory.MemoryManager` (see the agreed memory API). A chunk ended with
    nothing committed (`Session.predict`) leaves the memory as it was."""

    frames_committed: int

    def begin_chunk(self, pose=None, events=()) -> None: ...
    def end_chunk(self) -> None: ...
    def kv_bytes(self) -> int: ...
    def stats(self) -> dict: ...
    def flush(self) -> None: ...
    def reset(self) -> None: ...


#: `(spec, policy, budget_bytes) -> memory`; raises (e.g. `memory.BudgetError`) when it cannot fit.
MemoryFactory = Callable[[Any, str, "int | None"], MemoryLike]
#: `frame_clock -> pose | None`: the pose the memory retrieves by for the chunk starting at that frame.
PoseSource = Callable[[int], "tuple[float, float, float] | None"]


def default_memory_factory(spec, policy: str, budget_bytes: int | None) -> MemoryLike:
    from reverie.memory import MemoryManager

    return MemoryManager.create(spec, policy=policy, budget_bytes=budget_bytes)


@dataclass(frozen=True, slots=True)
class StepResult:
    """One generated frame and when it was made (`time.monotonic_ns`)."""

    frame: np.ndarray          # uint8 [H, W, 3], C-contiguous, owned by the caller
    index: int                 # frame index in the session (0 = first generated frame)
    action: ActionValue        # the action value (an index, or a tuple of floats for a vector space)
    pose: tuple[float, float, float] | None
    t_start_ns: int
    t_end_ns: int


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """One chunk (`spec.chunk_frames` latents, `spec.frames_per_chunk` frames), as `Session.generate` /
    `Session.predict` made it."""

    latents: torch.Tensor      # clean latents [chunk_frames, tokens, channels] (on the model's device)
    frames: np.ndarray         # uint8 [frames_per_chunk, H, W, 3], decoded
    actions: torch.Tensor      # as the model takes them (`ModelSpec.bind_actions`)
    poses: list                # per frame: the dead-reckoned pose after it (None without a pose head or
                               # for a prediction, which moves nothing)
    chunk_index: int           # the noise index it was sampled with


class Session:
    """A playable world: `step(action) -> StepResult`.

    Args:
        model: a stateless `WorldModel` (shared between sessions).
        seed_frame: uint8 `[H, W, 3]` with `H, W` = `model.spec.frame_shape[:2]`.
        policy, budget_bytes: the memory configuration, built by `memory_factory` (default policy: `full`,
            or `none` for a model without an attention cache).
        seed: noise seed; the same seed, seed frame and actions give the same frames.
        memory_factory: builds the memory (at start and on `rebuild_memory`); it may return a wrapper
            around a real memory (shadow mode, probes).
        recache_chunks: clean chunks kept to re-commit when the memory is rebuilt.
        pose_source: `frame_clock -> pose | None`, the pose passed to `memory.begin_chunk` for each chunk
            (`frame_clock` counts the seed frame as 0, then every observed and generated frame), e.g. the
            real game's pose, or None for no retrieval; default: the session's dead-reckoned `pose`.
        seed_action: the action committed with the seed frame (default: the space's `noop`).
    """

    def __init__(self, model: WorldModel, seed_frame: np.ndarray, *, policy: str | None = None,
                 budget_bytes: int | None = None, seed: int = 0, session_id: str = "",
                 memory_factory: MemoryFactory = default_memory_factory, recache_chunks: int = RECACHE_CHUNKS,
                 pose_source: PoseSource | None = None, seed_action=None):
        spec = model.spec
        seed_frame = np.asarray(seed_frame)
        if seed_frame.dtype != np.uint8 or seed_frame.shape != tuple(spec.frame_shape):
            raise ValueError(f"seed frame must be uint8 {tuple(spec.frame_shape)}, got {seed_frame.dtype} {seed_frame.shape}")
        self.model = model
        self.spec = spec
        self.id = session_id
        self.seed = int(seed)
        self.policy = policy if policy is not None else ("full" if spec.layers else "none")
        self.budget_bytes = budget_bytes
        self._factory = memory_factory
        self.memory = memory_factory(spec, self.policy, budget_bytes)
        self.seed_frame = np.array(seed_frame, order="C", copy=True)
        self.seed_action = spec.action_space.noop if seed_action is None else self._check_action(seed_action)
        self.pose_source = pose_source
        self._recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=max(1, recache_chunks))
        self._pending: deque[tuple[np.ndarray, tuple | None]] = deque()
        self.paused = False
        self.recorder = None  # an engine.recorder.Recorder while recording
        self.context = FrameContext(spec)  # the latest clean latents of frame-stacking models
        self._start()

    # --- lifecycle -------------------------------------------------------------------------------------
    def _start(self) -> None:
        self.frame_index = 0              # frames handed out by `step`
        self.chunk_index = 0              # chunks generated: the noise index of the next one
        self.frame_clock = 0              # the seed frame, then every observed and generated frame
        self.pose: tuple[float, float, float] | None = (0.0, 0.0, 0.0) if self.spec.has_pose_head else None
        self._pending.clear()
        self._recent.clear()
        self.context.reset()
        self.history: list[ActionValue] = []      # actions since the seed frame (regenerating a recording replays them)
        self.replayable = True            # False once a live event (seed, policy, budget, flush) changed the course
        self._prefix_replayable = True    # False once `history` misses a scene change (a recording holds it)
        with torch.inference_mode():
            if self.spec.prompt_tokens:  # the seed frame is the prompt of a model that cross-attends to one
                self.context.prompt = self.model.prompt(torch.from_numpy(self.seed_frame).to(self.model.device))
            self._commit_seed(self.seed_frame, self.seed_action)
        self.frame_clock = 1

    def _commit_seed(self, frame: np.ndarray, action, events=()) -> None:
        """Commit a seed frame (the session's first, or a new scene's, after its memory `events`): it fills
        a whole chunk of context, held for all of it, with `action`."""
        k, f = self.spec.chunk_frames, self.spec.frames_per_latent
        seed = torch.from_numpy(frame)[None].expand(f, *frame.shape).contiguous()
        latents = self.model.encode(seed.to(self.model.device))
        self._commit(latents.expand(k, *latents.shape[1:]).contiguous(), self._bind([action] * self.spec.frames_per_chunk),
                     events)

    def _retrieval_pose(self):
        """The pose the memory retrieves by for the next chunk."""
        return self.pose if self.pose_source is None else self.pose_source(self.frame_clock)

    def _commit(self, latents: torch.Tensor, actions: torch.Tensor, events=()):
        """Commit clean latents `[chunk_frames, tokens, channels]` as context (seed frame, recache or
        observed frames), the memory `events` handled first; returns the model's pose deltas for them
        (None without a pose head)."""
        self.memory.begin_chunk(pose=self._retrieval_pose(), events=events)
        pose_delta = commit_frames(self.model, self.memory, latents, actions, self.context)
        self.memory.end_chunk()
        self._recent.append((latents, actions))
        return pose_delta

    def _check_action(self, action) -> ActionValue:
        """Any form of one action (index, name, map, vector) -> the space's value; ValueError if not in it."""
        return self.spec.action_space.coerce(action)

    def _bind(self, values: list) -> torch.Tensor:
        """A chunk's per-frame action values as the model takes them, on its device."""
        return self.spec.bind_actions(values).to(self.model.device)

    def _chunk_actions(self, actions) -> torch.Tensor:
        """Per-frame actions of one chunk, checked, as the model takes them (`ModelSpec.bind_actions`)."""
        acts = self.spec.action_space.coerce_many(actions)
        if len(acts) != self.spec.frames_per_chunk:
            raise ValueError(f"a chunk takes {self.spec.frames_per_chunk} actions (one per frame), got {len(acts)}")
        if self._pending:
            raise RuntimeError("between chunks only: generated frames of this chunk are still pending")
        return self._bind(acts)

    def observe(self, frames: np.ndarray, actions) -> None:
        """Commit known frames as history, as if the session had shown them: uint8 `[n, H, W, 3]` with the
        action that produced each (`n` a multiple of `spec.frames_per_chunk`; committed one chunk at a time).

        The frames are encoded and committed clean (no denoising) and the pose moves by the model's pose
        deltas for them, so the next `step` continues from the last one. They are not generated frames:
        `frame_index` and `history` do not count them, a recording does not hold them, and the session is no
        longer `replayable` from its seed frame and actions. Call it between chunks (nothing pending).
        """
        k, n = self.spec.chunk_frames, self.spec.frames_per_chunk
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape[1:] != tuple(self.spec.frame_shape):
            raise ValueError(f"frames must be uint8 [n, {', '.join(map(str, self.spec.frame_shape))}], "
                             f"got {frames.dtype} {frames.shape}")
        values = self.spec.action_space.coerce_many(actions)
        if len(frames) % n or len(values) != len(frames):
            raise ValueError(f"need one action per frame and a multiple of {n} frames, got {len(frames)} frames "
                             f"and {len(values)} actions")
        if self._pending:
            raise RuntimeError("observe between chunks: generated frames of this chunk are still pending")
        device = self.model.device
        with torch.inference_mode():
            for i in range(0, len(frames), n):
                latents = self.model.encode(torch.from_numpy(np.array(frames[i:i + n])).to(device))
                delta = self._commit(latents, self._bind(values[i:i + n]))
                self._integrate(delta, k)
                self.frame_clock += n
        if len(frames):
            self.replayable = False

    def reset(self, seed: int | None = None) -> None:
        """Back to the seed frame with an empty memory (and optionally a new noise seed)."""
        if seed is not None:
            self.seed = int(seed)
        self.memory.reset()
        self._start()

    def set_seed(self, seed: int) -> None:
        """New noise seed from the next chunk on (history is kept)."""
        self.seed = int(seed)
        self.replayable = False

    def rebuild_memory(self, policy: str | None = None, budget_bytes: int | None | type(...) = ...) -> None:
        """Switch policy and/or budget live: a new memory, then the last frames re-committed.

        Raises whatever the factory raises (e.g. `memory.BudgetError`) and then keeps the old memory.
        """
        self._recache(policy, budget_bytes)
        self.replayable = False

    def _recache(self, policy: str | None = None, budget_bytes: int | None | type(...) = ...) -> None:
        """The one recache path: a new memory from the factory, and the last `recache_chunks` clean chunks
        committed into it again (under the session's condition as it is now)."""
        policy = self.policy if policy is None else policy
        budget = self.budget_bytes if budget_bytes is ... else budget_bytes
        new = self._factory(self.spec, policy, budget)
        old, self.memory = self.memory, new
        self.policy, self.budget_bytes = policy, budget
        recent = list(self._recent)
        self._recent.clear()
        self.context.reset()
        with torch.inference_mode():
            for latents, actions in recent:
                self._commit(latents, actions)
        del old

    def scene(self, frame: np.ndarray, handling: str | None = None, *, action=None, pose=None) -> str:
        """Start a new scene mid-session from `frame` (uint8 `[H, W, 3]`: another place of the game, an
        image, a teleport). What the memory keeps of the old scene is `handling` (default: the memory
        policy's `on_scene`, else "flush"; see `memory.events`):

        * "flush": the sink alone stays (Infinity-RoPE's KV flush, down to the sink);
        * "cut": everything stays, and the new scene starts a RoPE cut's gap after it;
        * "recache": everything stays, re-encoded under the new condition (PaFu-KV's / LongLive's re-cache:
          models that take a prompt get the new frame as their prompt first; for a model without one the
          history is committed again as it was).

        Then the frame is committed as a seed frame is (the whole first chunk of context, with `action`,
        default noop). Frames of the old scene's chunk not yet handed out are dropped. The dead-reckoned
        pose goes on from where it was unless `pose` sets it (e.g. the real game's, after a teleport): pose
        retrieval finds the old scene's frames by it. While recording, the frame is written as a row of its
        own (`extra.scene` names the handling), so regenerating the recording reproduces the scene change;
        without a recording the session is no longer `replayable`. Returns the handling used."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.shape != tuple(self.spec.frame_shape):
            raise ValueError(f"a scene frame must be uint8 {tuple(self.spec.frame_shape)}, got {frame.dtype} {frame.shape}")
        if handling is None:
            handling = getattr(getattr(self.memory, "cfg", None), "on_scene", "flush")
        if handling not in SCENE_HANDLINGS:
            raise ValueError(f"unknown scene handling {handling!r}; known: {', '.join(SCENE_HANDLINGS)}")
        action = self.spec.action_space.noop if action is None else self._check_action(action)
        if pose is not None:
            pose = tuple(float(v) for v in pose)
            if len(pose) != 3 or not all(np.isfinite(pose)):
                raise ValueError(f"a pose is (x, y, angle_degrees), got {pose}")
        frame = np.array(frame, order="C", copy=True)
        self._pending.clear()
        if self.spec.prompt_tokens:
            with torch.inference_mode():
                self.context.prompt = self.model.prompt(torch.from_numpy(frame).to(self.model.device))
        events = ()
        if handling == "recache":  # outside inference mode, as every memory is built
            self._recache()
        else:  # handled by the memory as the new frame's chunk begins, so it retrieves at the new pose
            events = (MemoryEvent("flush", keep_frames=0) if handling == "flush" else MemoryEvent("cut"),)
        if handling == "flush":
            self._recent.clear()
            self.context.reset()
        if pose is not None and self.pose is not None:
            self.pose = pose
        with torch.inference_mode():
            self._commit_seed(frame, action, events)
        self.frame_clock += 1
        if self.recorder is not None:
            self.recorder.scene(frame, handling, action, self.pose)
            self._prefix_replayable = False  # the recording holds the scene; a later one's prefix would not
        else:
            self.replayable = False
        return handling

    def flush(self) -> None:
        self.memory.flush()
        self.replayable = False

    def fork(self) -> "Session":
        """An independent copy of this session (memory, frame context, pose, counters) on the same model,
        not recording: what-if runs from one state (e.g. `bench longrun`'s frozen control chunks)."""
        recorder, self.recorder = self.recorder, None
        try:
            return copy.deepcopy(self, {id(self.model): self.model, id(self.spec): self.spec})
        finally:
            self.recorder = recorder

    # --- recording -----------------------------------------------------------------------------------
    def start_recording(self, path, *, fps: float | None = None):
        """Record every frame from now on into the rollout directory `path` (written off the hot path),
        played back at `fps` (default: the model's real-time rate)."""
        if self.recorder is None:
            from reverie.engine.recorder import Recorder

            self.recorder = Recorder(path, self.model, seed_frame=self.seed_frame, seed=self.seed,
                                     policy=self.policy, budget_bytes=self.budget_bytes,
                                     prefix_actions=self.history,
                                     regenerable=self.replayable and self._prefix_replayable, fps=fps,
                                     seed_action=self.seed_action)
        return self.recorder

    def stop_recording(self, wait: bool = True):
        """Finish the recording (returns the recorder, still finishing in the background if not `wait`)."""
        rec, self.recorder = self.recorder, None
        if rec is not None:
            rec.close(wait=wait, regenerable=self.replayable)
        return rec

    # --- the hot path ------------------------------------------------------------------------------------
    def step(self, action, *, seq: int | None = None, t_client_ns: int = 0) -> StepResult:
        """Generate (or hand out the next already generated) frame for `action` (any form
        `ActionSpace.coerce` takes: an index, a name, a `{"buttons", "axes"}` map, a vector).

        `seq` and `t_client_ns` (the client's action number and send time) go into the recording."""
        action = self._check_action(action)
        t0 = time.monotonic_ns()
        if not self._pending:
            chunk = self._generate(self._bind([action] * self.spec.frames_per_chunk))
            self._pending.extend(zip(chunk.frames, chunk.poses))
        frame, pose = self._pending.popleft()
        result = StepResult(frame=frame, index=self.frame_index, action=action, pose=pose,
                            t_start_ns=t0, t_end_ns=time.monotonic_ns())
        self.frame_index += 1
        self.history.append(action)
        if self.recorder is not None:  # cheap: the writing happens on the recorder's writer thread
            self.recorder.append(result, seq=result.index if seq is None else seq, t_client_ns=t_client_ns,
                                 kv_bytes=self.memory.kv_bytes())
        return result

    def generate(self, actions) -> ChunkResult:
        """Generate and commit the next chunk for per-frame `actions` (`spec.frames_per_chunk` of them), as one
        `ChunkResult`. Its frames are not handed out by `step`, counted in `frame_index` / `history` or
        recorded, so the session is no longer `replayable`. Call it between chunks (nothing pending)."""
        chunk = self._generate(self._chunk_actions(actions))
        self.replayable = False
        return chunk

    @torch.inference_mode()
    def predict(self, actions, *, chunk_index: int | None = None) -> ChunkResult:
        """Sample the next chunk for per-frame `actions` without committing it: memory, pose and counters do
        not move, so `predict` then `generate` (same actions) give the same frames. For teacher forcing:
        score the prediction, then `observe` the real frames. `chunk_index` picks the noise (default: the
        next chunk's, `self.chunk_index`)."""
        acts = self._chunk_actions(actions)
        index = self.chunk_index if chunk_index is None else int(chunk_index)
        self.memory.begin_chunk(pose=self._retrieval_pose(), events=())
        x0 = sample_chunk(self.model, self.memory, acts, seed=self.seed, chunk_index=index, context=self.context)
        self.memory.end_chunk()
        return ChunkResult(x0, self._decode(x0), acts, [None] * self.spec.frames_per_chunk, index)

    @torch.inference_mode()
    def _generate(self, actions: torch.Tensor) -> ChunkResult:
        k, n = self.spec.chunk_frames, self.spec.frames_per_chunk
        index = self.chunk_index
        self.memory.begin_chunk(pose=self._retrieval_pose(), events=())
        x0, pose_delta = generate_chunk(self.model, self.memory, actions, seed=self.seed, chunk_index=index,
                                        context=self.context)
        self.memory.end_chunk()
        self.chunk_index += 1
        self.frame_clock += n
        self._recent.append((x0, actions))  # x0 is not touched again: no copy
        poses = [p for p in self._integrate(pose_delta, k) for _ in range(self.spec.frames_per_latent)]
        return ChunkResult(x0, self._decode(x0), actions, poses, index)

    def _decode(self, x0: torch.Tensor) -> np.ndarray:
        """uint8 `[k, H, W, 3]` frames on the host (the one host sync per chunk)."""
        return np.ascontiguousarray(self.model.decode(x0).to("cpu", torch.uint8).numpy())

    def _integrate(self, pose_delta: torch.Tensor | None, k: int) -> list[tuple | None]:
        """Dead reckoning from the model's egocentric deltas (forward, left, dangle degrees), each in the
        heading of the frame before it (see `world.dit.data.pose_deltas`)."""
        if pose_delta is None or self.pose is None:
            return [None] * k
        out = []
        pose = self.pose
        for fwd, left, da in pose_delta.to("cpu", torch.float64).tolist():
            pose = advance_pose(pose, fwd, left, da)
            out.append(pose)
        self.pose = out[-1]
        return out

    # --- reporting ---------------------------------------------------------------------------------------
    def stats(self) -> dict:
        """JSON-able statistics: memory stats plus the session's own counters. `frame_index` counts video
        frames; the memory's figures (`frames_committed`, bytes per frame) count latent frames, each
        `frames_per_latent` video frames."""
        try:
            mem = dict(self.memory.stats())
        except Exception as exc:  # a stats bug must not take the session down
            mem = {"error": str(exc)}
        mem.setdefault("kv_bytes", int(self.memory.kv_bytes()))
        return {"session": self.id, "policy": self.policy, "budget_bytes": self.budget_bytes,
                "frame_index": self.frame_index, "seed": self.seed, "paused": self.paused,
                "frames_per_latent": self.spec.frames_per_latent, "memory": mem}
