"""The conformance kit: what the engine relies on a world model for, checked rule by rule.

`check_model(model)` runs each rule and returns a `Report` (a row per rule: pass, fail, skip or slow, with
what it saw); `reverie check-model NAME` prints it as a table and exits non-zero on a failure; a plug-in's
own tests call `assert_conforms(model)`. The rules:

    spec-and-shapes   encode / decode / denoise / commit (and `prompt`, when declared) take and return the
                      declared shapes and dtypes, all finite (latents `[chunk_frames, *latent_shape]`,
                      frames uint8 `[frames_per_chunk, *frame_shape]`, pose deltas `[chunk_frames, 3]` with
                      a pose head, a prompt `[prompt_tokens, channels]`)
    deterministic     the same seed and actions give the same frames (a recording replays)
    cache-writes      `denoise` reads each cached layer once per step and never writes; `commit` writes
                      each layer exactly once; a model without a cache never touches the memory
    budget            under every policy the model allows, a session at a fixed budget (32 latent frames)
                      run for twice that many frames (`full`, which keeps every frame, to just under it)
                      keeps its K/V within the budget and holds no more than the server reserves for it
                      (`memory.session_bytes`), measured (`memory.measure`)
    wire              the action space and sampled actions round-trip through the protocol unchanged
    checkpoint        a corrupt, empty, mismatched or missing checkpoint file gives an error naming the
                      file (skipped when the model's factory takes no `checkpoint`)
    real-time         a short run meets the model's real-time rate on this machine; `slow` (not a
                      failure) says by how much it misses
"""

from __future__ import annotations

import inspect
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

STATUSES = ("pass", "fail", "skip", "slow")


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    status: str
    detail: str = ""


@dataclass
class Report:
    model: str
    results: list[RuleResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "fail" for r in self.results)

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "fail"]

    def table(self) -> str:
        width = max(len(r.rule) for r in self.results)
        lines = [f"{'rule':<{width}}  result  detail"]
        lines += [f"{r.rule:<{width}}  {r.status:<6}  {r.detail}" for r in self.results]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"model": self.model, "ok": self.ok,
                "rules": {r.rule: {"status": r.status, "detail": r.detail} for r in self.results}}


class ConformanceError(AssertionError):
    """Raised by `assert_conforms`; the message names every broken rule."""


class _Broken(Exception):
    """A contract break the probe caught before the memory saw it."""


class _Probe:
    """The memory API around a real memory, counting `view` / `commit` calls per layer."""

    def __init__(self, inner):
        self.inner = inner
        self.views: dict[int, int] = {}
        self.commits: dict[int, int] = {}
        self.denoising = False  # a commit now is refused (and recorded) before the memory sees it
        self._chunk: set[int] = set()

    def begin_chunk(self, pose=None, events=()):
        self._chunk = set()
        return self.inner.begin_chunk(pose=pose, events=events)

    def clear(self) -> None:
        self.views, self.commits = {}, {}

    def view(self, layer, q, k, v):
        self.views[layer] = self.views.get(layer, 0) + 1
        return self.inner.view(layer, q, k, v)

    def commit(self, layer, k, v, q):
        self.commits[layer] = self.commits.get(layer, 0) + 1
        if self.denoising:
            raise _Broken(f"denoise wrote the cache (commit on layer {layer})")
        if layer in self._chunk:
            raise _Broken(f"commit wrote layer {layer} twice in one chunk; expected each of the "
                          f"{self.inner.spec.layers} layers once")
        self._chunk.add(layer)
        return self.inner.commit(layer, k, v, q)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _seed_frame(spec) -> np.ndarray:
    h, w, _ = spec.frame_shape
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x * y) % 251], -1).astype(np.uint8)


def _actions(spec, seed: int, chunks: int) -> list:
    rng = random.Random(seed)
    return [spec.action_space.sample(rng) for _ in range(chunks * spec.frames_per_chunk)]


def _session(model, memory_factory=None, **kw):
    from reverie.engine.session import Session, default_memory_factory

    return Session(model, _seed_frame(model.spec), memory_factory=memory_factory or default_memory_factory, **kw)


# --- the rules ---------------------------------------------------------------------------------------
def rule_shapes(model) -> RuleResult:
    from reverie.engine.sampler import sample_chunk

    spec = model.spec
    k, n = spec.chunk_frames, spec.frames_per_chunk
    frames = torch.from_numpy(np.stack([_seed_frame(spec)] * n)).to(model.device)
    with torch.inference_mode():
        latents = model.encode(frames)
        want = (k, *spec.latent_shape)
        if tuple(latents.shape) != want or not latents.is_floating_point():
            return RuleResult("spec-and-shapes", "fail", f"encode of {n} frames gave {latents.dtype} "
                              f"{tuple(latents.shape)}, the spec declares float {want}")
        if spec.prompt_tokens:
            prompt = model.prompt(frames[0])
            want_p = (spec.prompt_tokens, spec.latent_shape[1])
            if prompt is None or tuple(prompt.shape) != want_p or not torch.isfinite(prompt).all():
                return RuleResult("spec-and-shapes", "fail", f"prompt() gave {None if prompt is None else tuple(prompt.shape)}, "
                                  f"the spec declares {want_p} (prompt_tokens, channels)")
        decoded = model.decode(latents)
        if tuple(decoded.shape) != (n, *spec.frame_shape) or decoded.dtype != torch.uint8:
            return RuleResult("spec-and-shapes", "fail", f"decode gave {decoded.dtype} {tuple(decoded.shape)}, "
                              f"the spec declares uint8 {(n, *spec.frame_shape)}")
        session = _session(model)
        acts = spec.bind_actions(_actions(spec, 0, 1)).to(model.device)
        session.memory.begin_chunk(pose=None, events=())
        x0 = sample_chunk(model, session.memory, acts, seed=0, chunk_index=0, context=session.context)
        pose = model.commit(x0, acts, session.memory, **session.context.kwargs())
        session.memory.end_chunk()
    if tuple(x0.shape) != want or not torch.isfinite(x0).all():
        return RuleResult("spec-and-shapes", "fail", f"denoise gave {tuple(x0.shape)} (finite: "
                          f"{bool(torch.isfinite(x0).all())}) for latents {want}")
    if spec.has_pose_head != (pose is not None) or (pose is not None and tuple(pose.shape) != (k, 3)):
        return RuleResult("spec-and-shapes", "fail", f"commit returned {None if pose is None else tuple(pose.shape)}; "
                          f"has_pose_head={spec.has_pose_head} wants {(k, 3) if spec.has_pose_head else None}")
    return RuleResult("spec-and-shapes", "pass", f"latents {want}, {n} frames per chunk, actions "
                      f"{tuple(acts.shape)} {str(acts.dtype).replace('torch.', '')}")


def rule_deterministic(model, chunks: int = 3) -> RuleResult:
    spec = model.spec
    runs = []
    for _ in range(2):
        session = _session(model, seed=11)
        runs.append(np.stack([session.step(a).frame for a in _actions(spec, 1, chunks)]))
    if not np.array_equal(*runs):
        first = int(np.argmax([not np.array_equal(a, b) for a, b in zip(*runs)]))
        return RuleResult("deterministic", "fail", f"two runs with seed 11 and the same actions differ from frame {first}")
    return RuleResult("deterministic", "pass", f"{len(runs[0])} frames identical twice")


def rule_cache_writes(model) -> RuleResult:
    try:
        return _cache_writes(model)
    except _Broken as exc:
        return RuleResult("cache-writes", "fail", str(exc))


def _cache_writes(model) -> RuleResult:
    from reverie.engine.sampler import sample_chunk

    spec = model.spec
    probe = None

    def factory(spec_, policy, budget):
        nonlocal probe
        from reverie.engine.session import default_memory_factory

        probe = _Probe(default_memory_factory(spec_, policy, budget))
        return probe

    session = _session(model, memory_factory=factory)
    layers = dict.fromkeys(range(spec.layers), 1)
    with torch.inference_mode():
        for chunk in range(2):
            acts = spec.bind_actions(_actions(spec, 2 + chunk, 1)).to(model.device)
            probe.clear()
            probe.begin_chunk(pose=None, events=())
            probe.denoising = True
            try:
                x0 = sample_chunk(model, probe, acts, seed=0, chunk_index=chunk, context=session.context)
            finally:
                probe.denoising = False
            steps = len(spec.steps)
            if probe.views != {layer: steps for layer in layers}:
                return RuleResult("cache-writes", "fail", f"over {steps} denoise steps, views per layer were "
                                  f"{probe.views}, expected one per layer per step {dict.fromkeys(layers, steps)}")
            probe.clear()
            model.commit(x0, acts, probe, **session.context.kwargs())
            if probe.commits != layers:
                return RuleResult("cache-writes", "fail", f"commit wrote layers {probe.commits}, expected each of the "
                                  f"{spec.layers} layers once")
            probe.end_chunk()
            session.context.push(x0)
    what = "no cache: memory untouched" if not spec.layers else f"{spec.layers} layers: 1 view per step, 1 commit"
    return RuleResult("cache-writes", "pass", what)


def rule_budget(model, policies: list[str] | None = None, budget_frames: int = 32) -> RuleResult:
    from reverie.memory import MemoryManager, available_policies, session_bytes
    from reverie.memory.measure import held_bytes

    spec = model.spec
    policies = (policies or available_policies()) if spec.layers else ["none"]  # what the model allows
    budget = budget_frames * spec.kv_bytes_per_frame if spec.layers else None
    worst = []
    for policy in policies:
        # twice the budget's frames, so every policy evicts; `full` keeps every frame, so it stops short
        chunks = (budget_frames // spec.chunk_frames - 1) if policy == "full" else 2 * budget_frames // spec.chunk_frames
        try:
            price = session_bytes(spec, policy, budget, horizon_frames=chunks * spec.chunk_frames * 2)
            session = _session(model, policy=policy, budget_bytes=budget,
                               memory_factory=lambda s, p, b: MemoryManager.create(s, p, budget_bytes=b))
            for a in _actions(spec, 3, chunks)[::spec.frames_per_chunk]:
                session.generate([a] * spec.frames_per_chunk)
        except Exception as exc:
            return RuleResult("budget", "fail", f"policy '{policy}' at {budget} bytes: {type(exc).__name__}: {exc}")
        kv = session.memory.kv_bytes()
        held = held_bytes(session, exclude=(model,))
        if budget is not None and kv > budget:
            return RuleResult("budget", "fail", f"policy '{policy}' holds {kv} bytes of K/V over its budget of {budget}")
        if held > price.total:
            return RuleResult("budget", "fail", f"policy '{policy}': the session holds {held} bytes, more than the "
                              f"{price.total} the server reserves for it")
        worst.append(held / price.total)
    return RuleResult("budget", "pass", f"{len(policies)} policies at {budget_frames} frames: held <= reserved "
                      f"(at most {max(worst):.1%} of it)")


def rule_wire(model, n: int = 64) -> RuleResult:
    from reverie.engine import protocol as P
    from reverie.world.actions import ActionSpace

    space = model.spec.action_space
    welcome = P.decode(P.encode(P.Welcome(controls=space.describe())), limit=1 << 20)
    if ActionSpace.from_description(welcome.controls) != space:
        return RuleResult("wire", "fail", "the action space does not survive describe -> wire -> from_description")
    rng = random.Random(5)
    for value in [space.noop] + [space.sample(rng) for _ in range(n)]:
        raw = P.encode(P.Action(seq=1, action=space.to_wire(value)))
        if len(raw) > P.MAX_HEADER_BYTES:
            return RuleResult("wire", "fail", f"an action message is {len(raw)} bytes, over {P.MAX_HEADER_BYTES}")
        back = space.coerce(P.decode(raw).action)
        if back != value:
            return RuleResult("wire", "fail", f"action {space.label(value)} came back as {space.label(back)}")
    return RuleResult("wire", "pass", f"space ({len(space.buttons)} buttons, {len(space.axes)} axes, "
                      f"{space.encoding}) and {n + 1} actions round-trip")


def rule_checkpoint(factory: Callable | None) -> RuleResult:
    if factory is None or "checkpoint" not in inspect.signature(factory).parameters:
        return RuleResult("checkpoint", "skip", "the factory takes no checkpoint")
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="reverie-check-") as tmp:
        cases = {"corrupt": Path(tmp) / "corrupt.safetensors", "empty": Path(tmp) / "empty.safetensors",
                 "mismatched": Path(tmp) / "mismatched.safetensors", "missing": Path(tmp) / "missing.safetensors"}
        cases["corrupt"].write_bytes(bytes(range(256)) * 8)
        cases["empty"].write_bytes(b"")
        save_file({"not_this_model": torch.zeros(3)}, str(cases["mismatched"]))
        for what, path in cases.items():
            try:
                factory(checkpoint=str(path))
            except Exception as exc:
                if path.name not in str(exc):
                    return RuleResult("checkpoint", "fail", f"a {what} checkpoint raised {type(exc).__name__} "
                                      f"without naming the file: {str(exc)[:80]!r}")
                continue
            return RuleResult("checkpoint", "fail", f"a {what} checkpoint loaded without an error")
    return RuleResult("checkpoint", "pass", "corrupt, empty, mismatched and missing files each name the file")


def rule_real_time(model, seconds: float = 2.0) -> RuleResult:
    spec = model.spec
    session = _session(model)
    actions = _actions(spec, 4, 64)
    for a in actions[:spec.frames_per_chunk * 2]:  # warm up
        session.step(a)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or count % spec.frames_per_chunk:
        session.step(actions[count % len(actions)])
        count += 1
    fps = count / (time.perf_counter() - t0)
    need = spec.real_time_fps
    if fps >= need:
        return RuleResult("real-time", "pass", f"{fps:.1f} fps, real time is {need:.2f} ({torch.get_num_threads()} threads)")
    return RuleResult("real-time", "slow", f"{fps:.1f} fps misses real time ({need:.2f}) by {1 - fps / need:.0%} "
                      f"on this machine ({torch.get_num_threads()} threads)")


def check_model(model, *, factory: Callable | None = None, policies: list[str] | None = None,
                real_time_s: float = 2.0) -> Report:
    """Run every rule on `model` (`factory` builds it, for the checkpoint rule); never raises for a broken
    model: an exception inside a rule is that rule's failure."""
    report = Report(model.spec.name)
    rules = [("spec-and-shapes", lambda: rule_shapes(model)), ("deterministic", lambda: rule_deterministic(model)),
             ("cache-writes", lambda: rule_cache_writes(model)), ("budget", lambda: rule_budget(model, policies)),
             ("wire", lambda: rule_wire(model)), ("checkpoint", lambda: rule_checkpoint(factory)),
             ("real-time", lambda: rule_real_time(model, real_time_s))]
    for name, rule in rules:
        try:
            report.results.append(rule())
        except Exception as exc:
            report.results.append(RuleResult(name, "fail", f"{type(exc).__name__}: {str(exc)[:160]}"))
    return report


def assert_conforms(model, **kw) -> Report:
    """For a plug-in's own tests: raise `ConformanceError` naming every broken rule."""
    report = check_model(model, **kw)
    if not report.ok:
        raise ConformanceError("model '" + report.model + "' breaks: " +
                               "; ".join(f"{r.rule}: {r.detail}" for r in report.failed))
    return report
