import csv
import sys
from pathlib import Path

import pytest
import torch

from reverie.world.dit.config import TrainConfig, train_config
from reverie.world.dit.critic import FrameCritic, adaptive_weight, critic_loss, model_adv_loss
from reverie.world.dit.degrade import blur
from reverie.world.dit.train import train

sys.path.insert(0, str(Path(__file__).parent))
from test_train import _episodes  # noqa: E402


def test_critic_scores_cells_of_eight_pixels_and_refuses_other_shapes():
    critic = FrameCritic(8)
    assert critic(torch.zeros(2, 3, 48, 64)).shape == (2, 6, 8)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        critic(torch.zeros(2, 48, 64, 3))
    with pytest.raises(ValueError, match="width"):
        FrameCritic(0)


def _edges(n, gen):
    """Frames of random axis-aligned blocks: hard edges, as the game's walls have."""
    coarse = torch.rand(n, 3, 6, 8, generator=gen) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(48, 64), mode="nearest")


def test_a_trained_critic_tells_sharp_frames_from_their_blur():
    # what the critic is for: the mean-squared-error model's blur must score as fake
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    critic = FrameCritic(8)
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.5, 0.99))
    soft = lambda x: blur(x, torch.full((x.shape[0],), 2.0))  # noqa: E731
    for _ in range(60):
        real = _edges(8, gen)
        loss = critic_loss(critic, real, soft(real))
        opt.zero_grad()
        loss.backward()
        opt.step()
    real = _edges(16, gen)
    with torch.no_grad():
        assert critic(real).mean() > critic(soft(real)).mean() + 0.5
        # and the model's loss is lower for the sharp frames than for the blur
        assert model_adv_loss(critic, real) < model_adv_loss(critic, soft(real))


def test_adaptive_weight_is_the_ratio_of_the_two_gradients_at_the_last_layer():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    regression = (3.0 * w).sum()      # gradient norm 3 * sqrt(2)
    adversarial = (0.5 * w).sum()     # gradient norm 0.5 * sqrt(2)
    weight = adaptive_weight(regression, adversarial, w, scale=0.5)
    assert weight.item() == pytest.approx(0.5 * 6.0, rel=1e-5)  # (the norm ratio has a 1e-6 guard)
    assert not weight.requires_grad
    assert adaptive_weight(regression, adversarial, w, scale=0.5, max_weight=1.0).item() == 1.0
    (regression + adversarial).backward()  # both graphs kept for the update
    assert torch.equal(w.grad, torch.full((2,), 3.5))


def test_adversarial_training_logs_its_terms_and_resumes_with_its_critic(tmp_path):
    cfg = train_config("tiny").with_overrides(adv_weight=0.5, adv_start=1)
    eps = _episodes()
    a = train(eps, cfg, tmp_path / "a", seed=5, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "a" / "loss.csv")))
    assert float(rows[0]["adv_w"]) == 0.0 and all(float(r["adv_w"]) > 0.0 for r in rows[1:])
    assert all(float(r["critic"]) > 0.0 for r in rows)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "a" / "train_state.safetensors"))
    assert any(k.startswith("aux.critic.model.") for k in state)
    assert not any("critic" in k for k in load_file(str(a)))  # the model file holds the DiT alone
    # stopped half way and resumed: the same model and critic as the uninterrupted run
    train(eps, TrainConfig(**{**cfg.to_dict(), "steps": 2}), tmp_path / "b", seed=5, progress=False)
    train(eps, cfg, tmp_path / "b", seed=5, resume=True, progress=False)
    resumed = load_file(str(tmp_path / "b" / "train_state.safetensors"))
    for name, t in state.items():
        if name.startswith(("model.", "aux.critic.model.")):
            torch.testing.assert_close(resumed[name], t)


def test_adversarial_training_refuses_a_frozen_output_layer(tmp_path):
    cfg = train_config("tiny").with_overrides(adv_weight=0.5, train_only=("flow_out",))
    with pytest.raises(ValueError, match="output layer"):
        train(_episodes(), cfg, tmp_path / "a", seed=5, progress=False)


def test_the_critic_sees_frames_as_play_shows_them():
    from reverie.world.dit.config import model_config
    from reverie.world.dit.patches import patchify
    from reverie.world.dit.train import frame_images

    mcfg = model_config("tiny")
    frames = torch.randint(0, 256, (2, 3, 48, 64, 3), dtype=torch.uint8)
    latents = patchify(frames, mcfg.patch)
    images = frame_images(latents, mcfg)
    assert images.shape == (6, 3, 48, 64)
    torch.testing.assert_close(images, frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1.0)
    # values past the screen's range are clamped: no gradient for pushing them further
    assert frame_images(latents * 3.0, mcfg).abs().max() <= 1.0


def test_the_critic_judges_only_the_copies_at_or_above_its_level():
    from reverie.world.dit.config import model_config
    from reverie.world.dit.train import judged

    mcfg = model_config("tiny")
    cfg = TrainConfig(model="tiny", window=3, revisit_frames=1, adv_level_min=1.0)
    latents = torch.arange(2 * 3, dtype=torch.float32).reshape(2, 3, 1, 1).expand(2, 3, 48, 192) / 10
    t = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 1.0],
                      [0.0, 0.0, 0.0, 0.0, 0.3, 1.0, 0.2]])  # [revisit | clean x3 | noisy x3]
    frames = judged(latents, {"t": t}, cfg, mcfg)
    assert frames.shape == (3, 3, 48, 64)
    assert frames[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.2, 0.4])  # copies (0,0), (0,2), (1,1)
    everything = judged(latents, {"t": t}, cfg.with_overrides(adv_level_min=0.0), mcfg)
    assert len(everything) == 6
