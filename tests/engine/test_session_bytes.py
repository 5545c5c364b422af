"""`memory.session_bytes` against reality: the bytes live sessions hold (`memory.measure`), every policy."""

import dataclasses
import inspect

import numpy as np
import pytest
import torch

from reverie.engine.session import Session
from reverie.memory import BudgetError, MemoryManager, UnknownPolicyError, available_policies, session_bytes
from reverie.memory.footprint import RECACHE_CHUNKS
from reverie.memory.measure import measure
from tinyworld import TinyWorld

UPPER_BOUND_PARTS = ("views", "frames_out")  # their peak is inside a step; between steps they hold less


class ContextWorld(TinyWorld):
    """TinyWorld taking `frame_context` previous clean latents (and ignoring them), like the default model."""

    def __init__(self, frame_context: int = 1, **kw):
        super().__init__(**kw)
        self.spec = dataclasses.replace(self.spec, frame_context=frame_context)

    def denoise(self, x, t, actions, memory, context=None):
        return super().denoise(x, t, actions, memory)

    def commit(self, x0, actions, memory, context=None):
        return super().commit(x0, actions, memory)


def play(model, policy, steps, budget_bytes=None):
    torch.set_num_threads(1)  # small tensors: one thread is fastest, and kind to a busy machine
    session = Session(model, np.full(model.spec.frame_shape, 90, np.uint8), policy=policy, budget_bytes=budget_bytes)
    for i in range(steps):
        session.step([1, 3, 1, 4, 7][i % 5])
    return session


def check(model, policy, steps, budget_bytes=None):
    """Predicted before, measured after `steps` frames: every part but the in-step peaks to the byte."""
    price = session_bytes(model.spec, policy, budget_bytes)
    session = play(model, policy, steps, budget_bytes)
    held = measure(session, exclude=(model, model.spec))
    parts = dict(price.parts)
    exact = price.total - parts["bookkeeping"] - sum(parts[p] for p in UPPER_BOUND_PARTS)
    assert exact <= held.storage <= price.total - parts["bookkeeping"], (policy, parts, held)
    assert held.python <= parts["bookkeeping"], (policy, held)
    assert price.total >= held.total
    return price, held


@pytest.mark.parametrize("policy", available_policies())
@pytest.mark.parametrize("make", [TinyWorld, lambda: TinyWorld(chunk_frames=2), ContextWorld],
                         ids=["tiny", "tiny-chunk2", "tiny-context"])
def test_the_prediction_is_what_a_session_holds(policy, make):
    model = make()
    budget = 48 * model.spec.kv_bytes_per_frame if policy == "full" else None  # full: a budget holds it
    check(model, policy, 40, budget)


@pytest.mark.filterwarnings("ignore:ignoring the bundled salience head")
def test_the_default_model_under_dual_holds_its_archive_and_what_was_predicted():
    from reverie.world.registry import load_model

    model = load_model("default")
    price, held = check(model, "dual", 24)
    parts = dict(price.parts)
    spec = model.spec
    archived = 512 * spec.kv_bytes_per_frame  # the policy's archive: 512 frames of full K/V, host memory
    assert archived <= parts["archive"] < archived * 1.01 and parts["archive"] > 10 * parts["kv"]
    assert parts["frame_context"] == (spec.frame_context + 1) * 4 * int(np.prod(spec.latent_shape))
    assert price.host_bytes >= parts["archive"] and abs(price.total - held.total) < 0.01 * price.total


def test_what_cannot_be_reserved_is_refused_like_the_memory_refuses_it():
    spec = TinyWorld().spec
    with pytest.raises(BudgetError, match="grows without bound"):
        session_bytes(spec, "full")
    with pytest.raises(UnknownPolicyError, match="unknown memory policy 'nope'"):
        session_bytes(spec, "nope")
    with pytest.raises(BudgetError) as predicted:
        session_bytes(spec, "dual", 1000)
    with pytest.raises(BudgetError) as built:
        MemoryManager.create(spec, "dual", budget_bytes=1000)
    assert str(predicted.value) == str(built.value)


def test_the_recache_default_is_the_sessions():
    assert inspect.signature(Session).parameters["recache_chunks"].default == RECACHE_CHUNKS


def test_a_pinned_archive_is_priced_at_the_host_allocators_power_of_two():
    spec = TinyWorld().spec
    cpu, cuda = (dict(session_bytes(spec, "dual", device=d).parts)["archive"] for d in ("cpu", "cuda"))
    half = 512 * spec.kv_bytes_per_frame // 2      # keys (values the same)
    index = 512 * (8 + 24)
    assert cpu == 2 * half + index and cuda == 2 * (1 << (half - 1).bit_length()) + index
