import pytest
import torch

from world.checkpoint import CheckpointError
from world.dit.config import DiTConfig, model_config
from world.dit.default import build, patchify, unpatchify
from world.dit.patches import to_latents, to_pixels
from world.dit.warp import warp_latents

H, W, P = 48, 64, 8


def _frames(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, H, W, 3), dtype=torch.uint8, generator=gen)


def test_latent_pixel_round_trip_matches_patchify():
    frames = _frames()
    lat = patchify(frames, P)
    img = to_pixels(lat, P, H, W)
    torch.testing.assert_close(img, frames.float() / 127.5 - 1)
    torch.testing.assert_close(to_latents(img, P), lat)


def test_zero_params_are_the_identity():
    lat = patchify(_frames(), P)
    out = warp_latents(lat, torch.zeros(2, 4), P, H, W)
    torch.testing.assert_close(out, lat, atol=2e-5, rtol=0)  # float rounding of the sample grid only


def test_shift_moves_the_picture_by_whole_pixels():
    """tx = 2k/W samples k pixels to the right: the picture slides k pixels left, the edge is clamped."""
    frames = _frames(1)
    lat = patchify(frames, P)
    k = 3
    out = unpatchify(warp_latents(lat, torch.tensor([[2 * k / W, 0.0, 0.0, 0.0]]), P, H, W), P, H, W)
    assert torch.equal(out[0, :, :W - k], frames[0, :, k:])
    assert torch.equal(out[0, :, W - k:], frames[0, :, W - 1:].expand(H, k, 3))


def test_zoom_keeps_the_centre_and_magnifies():
    img = torch.zeros(1, H, W, 3)
    img[:, H // 2 - 4:H // 2 + 4, W // 2 - 4:W // 2 + 4] = 1.0  # an 8x8 square in the middle
    lat = to_latents(img, P)
    zoom = torch.tensor([[0.0, 0.0, -0.693147, -0.693147]])  # scale 0.5: everything twice as large
    out = to_pixels(warp_latents(lat, zoom, P, H, W), P, H, W)
    lit = out[0, ..., 0] > 0.5
    rows, cols = lit.any(1).nonzero().flatten(), lit.any(0).nonzero().flatten()
    assert 15 <= len(rows) <= 17 and 15 <= len(cols) <= 17
    assert abs(rows.float().mean().item() - (H - 1) / 2) < 1 and abs(cols.float().mean().item() - (W - 1) / 2) < 1


def test_warp_is_differentiable_in_its_parameters():
    lat = patchify(_frames(1), P)
    params = torch.zeros(1, 4, requires_grad=True)
    target = warp_latents(lat, torch.tensor([[0.1, 0.0, 0.0, 0.0]]), P, H, W)
    ((warp_latents(lat, params, P, H, W) - target) ** 2).mean().backward()
    assert params.grad is not None and params.grad[0, 0].abs() > 0


def test_prev_warp_needs_prev_frame():
    with pytest.raises(ValueError, match="prev_frame"):
        DiTConfig(prev_warp=True)


def test_warp_config_keeps_older_hashes():
    assert "prev_warp" not in model_config("default").to_dict()
    assert model_config("warp").hash() != model_config("default").hash()


def test_warm_start_grows_the_warp_head_from_a_model_without_it(tmp_path):
    """A `prev_frame` checkpoint warm-starts a `prev_warp` network: same outputs (identity warp)."""
    from world.dit.network import DiTNet
    from world.dit.train import _warm_start
    from world.checkpoint import save_state

    plain_cfg = DiTConfig(patch=8, width=48, layers=2, heads=2, temporal_rope=8, row_rope=8, col_rope=8,
                          prev_frame=True)
    plain = build(pretrained=False, config=plain_cfg, seed=4)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in plain.net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    path = tmp_path / "plain.safetensors"
    save_state(path, plain.net.state_dict(), {"config": plain_cfg.to_dict(), "config_hash": plain_cfg.hash()})
    grown_cfg = DiTConfig(**{**plain_cfg.to_dict(), "prev_warp": True})
    net = DiTNet(grown_cfg)
    info = _warm_start(net, grown_cfg, path)
    assert info["grown"] == ["prev_warp"]
    x, prev = torch.randn(1, 3, 48, 192), torch.randn(1, 3, 48, 192)
    args = (torch.rand(1, 3), torch.randint(0, 27, (1, 3)), torch.arange(3)[None],
            torch.tril(torch.ones(3, 3, dtype=torch.bool))[None])
    with torch.no_grad():
        torch.testing.assert_close(net.forward_frames(x, *args, prev=prev)[0],
                                   plain.net.forward_frames(x, *args, prev=prev)[0], atol=1e-5, rtol=1e-5)
    # another architecture is refused
    wider = DiTConfig(**{**plain_cfg.to_dict(), "width": 64})
    with pytest.raises(CheckpointError, match="architecture"):
        _warm_start(DiTNet(wider), wider, path)


def test_warp_alignment_loss_skips_frames_without_a_previous_frame():
    from world.dit.train import warp_alignment_loss

    target = torch.zeros(1, 3, 4, 6)
    moved = torch.ones(1, 3, 4, 6)
    prev = torch.ones(1, 3, 4, 6)
    prev[0, 1] = 0.0  # dropped: its error must not count
    moved[0, 1] = 5.0
    assert warp_alignment_loss(moved, prev, target).item() == pytest.approx(1.0)
    assert warp_alignment_loss(moved, torch.zeros_like(prev), target).item() == 0.0


def test_training_with_the_warp_loss_moves_the_warp_head(tmp_path):
    """One optimizer step of the tiny preset (warp_weight > 0) changes the zero-initialised warp head."""
    from world.dit.config import TrainConfig, train_config
    from world.dit.default import load_net
    from world.dit.train import train

    from .test_train import _episodes

    cfg = TrainConfig(**{**train_config("tiny").to_dict(), "steps": 1})
    assert cfg.warp_weight > 0
    out = train(_episodes(), cfg, tmp_path / "run", seed=0, progress=False)

    net, _ = load_net(out)
    assert net.warp_out is not None and net.warp_out.weight.abs().sum() > 0
    header = (tmp_path / "run" / "loss.csv").read_text().splitlines()[0]
    assert header.split(",") == ["step", "loss", "x0", "pose", "warp", "lr", "seconds"]
