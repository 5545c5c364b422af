import numpy as np
import pytest
import torch

from reverie.world.dit.config import TrainConfig, model_config
from reverie.world.dit.data import Episode, WindowSampler
from reverie.world.dit.degrade import blur, degrade_windows
from reverie.world.dit.patches import patchify
from reverie.world.dit.train import make_batch


def _gradient(images):
    return (images[:, :, 1:] - images[:, :, :-1]).abs().mean()


def test_blur_of_zero_width_is_the_identity_and_a_wider_one_softens():
    x = torch.rand(3, 48, 64, 3) * 2 - 1
    assert torch.allclose(blur(x, torch.zeros(3)), x)
    soft = blur(x, torch.tensor([0.5, 1.0, 2.0]))
    grads = [float(_gradient(soft[i:i + 1])) for i in range(3)]
    assert grads[0] > grads[1] > grads[2] and grads[0] < float(_gradient(x[:1]))


def test_blur_keeps_a_flat_image_flat_and_its_own_per_image_width():
    flat = torch.full((2, 48, 64, 3), 0.3)
    assert torch.allclose(blur(flat, torch.tensor([1.0, 2.0])), flat, atol=1e-6)
    x = torch.rand(1, 48, 64, 3).expand(2, -1, -1, -1).contiguous()
    out = blur(x, torch.tensor([0.0, 2.0]))
    assert torch.allclose(out[0], x[0]) and not torch.allclose(out[1], x[1])


def test_degradation_is_one_draw_per_window_and_off_at_probability_zero():
    gen = torch.Generator().manual_seed(0)
    frames = torch.full((8, 4, 48, 64, 3), 0.2)
    assert torch.equal(degrade_windows(frames, 0.0, 2.0, 0.1, gen), frames)
    out = degrade_windows(frames, 1.0, 2.0, 0.1, gen)
    assert (out >= -1).all() and (out <= 1).all()
    for w in out:  # one cast shared by the window's frames
        assert torch.allclose(w, w[:1].expand_as(w), atol=1e-6)
    assert not torch.allclose(out[0], out[1])  # and its own per window
    half = degrade_windows(frames, 0.5, 2.0, 0.1, torch.Generator().manual_seed(3))
    untouched = [torch.allclose(w, frames[0], atol=1e-6) for w in half]
    assert 0 < sum(untouched) < len(untouched)


def _sample():
    rng = np.random.default_rng(0)
    eps = [Episode(rng.integers(0, 256, (40, 48, 64, 3), dtype=np.uint8), rng.integers(0, 27, 40),
                   np.zeros((40, 3)), name=f"ep{i}") for i in range(2)]
    return WindowSampler(eps, TrainConfig(model="tiny", window=5, episode_steps=40)).sample(
        np.random.default_rng(0), 8)


def test_make_batch_degrades_what_the_window_conditions_on_and_never_its_targets():
    mcfg, sample = model_config("tiny"), _sample()
    cfg = TrainConfig(model="tiny", window=5, degrade_prob=1.0, context_aug_prob=0.0)
    batch = make_batch(sample, cfg, mcfg, torch.Generator().manual_seed(0))
    real = patchify(torch.from_numpy(sample["frames"]), mcfg.patch)
    real_prev = patchify(torch.from_numpy(sample["prev_frames"]), mcfg.patch)
    r, w = cfg.revisit_frames, cfg.window
    assert torch.equal(batch["x0"], real[:, r:])                    # targets stay the real frames
    clean = batch["x"][:, :r + w]                                   # clean copies (context noise off)
    assert not torch.allclose(clean, real, atol=1e-3)               # ... are degraded
    has = torch.from_numpy(sample["has_prev"])[:, r:]
    prev = batch["prev"][:, r:r + w]
    assert not torch.allclose(prev[has], real_prev[:, r:][has], atol=1e-3)
    assert torch.equal(batch["prev"][:, r:r + w], batch["prev"][:, r + w:])  # both copies see one input


def test_degradation_is_validated():
    with pytest.raises(ValueError):
        TrainConfig(degrade_prob=1.5)
    with pytest.raises(ValueError):
        TrainConfig(degrade_blur_max=-1.0)
