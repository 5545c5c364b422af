"""`reverie bench memory --attention-only` (`engine.bench.attention_alone`): every memory is filled to the
horizon and timed on the same chunks."""

import pytest
import torch

from reverie.engine.bench.attention_alone import time_memories
from reverie.kernels.view import RopeSpec
from reverie.memory import MemoryManager
from reverie.world.contract import ModelSpec


def tiny_spec():
    return ModelSpec(name="tiny-mem", frame_shape=(8, 8, 3), tokens_per_frame=4, latent_shape=(4, 3), layers=2,
                     heads=2, head_dim=8, chunk_frames=1, rope=RopeSpec(dims=4), kv_dtype=torch.float32)


def test_every_memory_is_filled_to_the_horizon_then_timed_chunk_by_chunk():
    spec = tiny_spec()
    mems = {"full": MemoryManager.create(spec, policy="full", horizon_frames=40),
            "window": MemoryManager.create(spec, policy="window", budget_frac=0.25, horizon_frames=40)}
    ms = time_memories(spec, mems, horizon=30, chunks=3)
    assert set(ms) == {"full", "window"} and all(v > 0 for v in ms.values())
    assert all(m.frames_committed == 33 for m in mems.values())
    assert len(mems["full"].layers[0].recent.frames) == 33  # full keeps all; window only its budget
    assert len(mems["window"].layers[0].recent.frames) < 33
    with pytest.raises(ValueError, match="chunks"):
        time_memories(spec, mems, horizon=10, chunks=0)
