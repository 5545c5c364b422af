"""A model without an attention cache (frame stacking) runs through the same session, memory accounting,
recording and server; cache policies say plainly that they do not apply."""

import numpy as np
import pytest

from reverie.engine.replay import regenerate
from reverie.engine.rollout import read_rollout
from reverie.engine.session import Session
from reverie.input.bot import run_bot
from reverie.input.net import Connection
from reverie.memory import BudgetError, MemoryManager, UnknownPolicyError, session_bytes
from reverie.memory.no_cache import NoCache
from serving import ServerThread, seed_frame
from tinyworld import TinyStack, TinyWorld
from reverie.engine.session import default_memory_factory


def stack_session(model=None, **kw):
    model = model or TinyStack()
    return Session(model, seed_frame(model.spec.frame_shape), memory_factory=default_memory_factory, **kw)


def test_a_frame_stacking_model_plays_from_its_context():
    s = stack_session()
    assert isinstance(s.memory, NoCache) and s.policy == "none" and s.memory.kv_bytes() == 0
    frames = [s.step(i % 3).frame for i in range(6)]
    assert s.context.latents.shape[0] == 2 and s.memory.frames_committed == 7
    assert not np.array_equal(frames[0], frames[1])
    assert s.stats()["memory"]["policy"] == "none"


def test_cache_policies_say_they_do_not_apply_and_the_budget_covers_the_context():
    spec = TinyStack().spec
    for policy in ("dual", "window", "full"):
        with pytest.raises(UnknownPolicyError, match="no attention cache"):
            MemoryManager.create(spec, policy=policy)
        with pytest.raises(UnknownPolicyError, match="no attention cache"):
            session_bytes(spec, policy)
    with pytest.raises(UnknownPolicyError, match="without an attention cache"):
        MemoryManager.create(TinyWorld().spec, policy="none")
    price = session_bytes(spec)
    context = dict(price.parts)["frame_context"]
    assert price.policy == "none" and dict(price.parts)["kv"] == 0 and context == 3 * 16 * 48 * 4
    with pytest.raises(BudgetError, match="context"):
        session_bytes(spec, "none", context - 1)
    with pytest.raises(BudgetError, match="context"):
        MemoryManager.create(spec, "none", budget_bytes=context - 1)


def test_a_cache_free_recording_regenerates_and_the_server_serves_it(tmp_path):
    s = stack_session(seed=4)
    s.start_recording(tmp_path / "rec")
    shown = [s.step(i % 5).frame.copy() for i in range(10)]
    s.stop_recording()
    again = regenerate(read_rollout(tmp_path / "rec"), TinyStack(), memory_factory=default_memory_factory)
    assert np.array_equal(again, np.stack(shown))
    with ServerThread(model=TinyStack(), memory_factory=default_memory_factory, footprint=session_bytes,
                      policy="dual") as st:
        assert st.server.config.policies == ("none",)     # told once, in the log: no policy applies
        with Connection(st.endpoint) as conn:
            assert conn.welcome.policy == "none" and conn.welcome.session_bytes > 0
            assert run_bot(conn, 5, None)["frames"] == 5
