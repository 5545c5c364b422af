from dataclasses import replace

import pytest
import torch

from reverie.world.checkpoint import CheckpointError
from reverie.world.dit.config import DiTConfig, model_config
from reverie.world.dit.default import build, patchify, unpatchify
from reverie.world.dit.patches import to_latents, to_pixels
from reverie.world.dit.warp import warp_latents

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


def test_warp_is_differentiable_in_its_parameters_and_flow():
    lat = patchify(_frames(1), P)
    params = torch.zeros(1, 4, requires_grad=True)
    flow = torch.zeros(1, lat.shape[-2], 2, requires_grad=True)
    target = warp_latents(lat, torch.tensor([[0.1, 0.0, 0.0, 0.0]]), P, H, W)
    ((warp_latents(lat, params, P, H, W, flow) - target) ** 2).mean().backward()
    assert params.grad is not None and params.grad[0, 0].abs() > 0
    assert flow.grad is not None and flow.grad[..., 0].abs().sum() > 0


def test_zero_flow_is_no_flow_and_a_uniform_flow_is_a_shift():
    lat = patchify(_frames(), P)
    params = torch.tensor([[0.02, -0.01, 0.05, 0.03], [0.0, 0.0, 0.0, 0.0]])
    tokens = lat.shape[-2]
    torch.testing.assert_close(warp_latents(lat, params, P, H, W, torch.zeros(2, tokens, 2)),
                               warp_latents(lat, params, P, H, W))
    shift = torch.tensor([6 / W, -4 / H])  # 3 px right, 2 px up, in normalised units
    moved = params.clone()
    moved[:, :2] += shift
    torch.testing.assert_close(warp_latents(lat, params, P, H, W, shift.expand(2, tokens, 2)),
                               warp_latents(lat, moved, P, H, W), atol=1e-5, rtol=0)


def test_flow_of_one_patch_moves_only_its_neighbourhood():
    """A displacement at one patch centre fades bilinearly to zero one patch away: the far side of the
    picture is untouched (the point of a per-patch flow: parallax is local)."""
    frames = _frames(1)
    lat = patchify(frames, P)
    gw = W // P
    flow = torch.zeros(1, lat.shape[-2], 2)
    flow[0, 0] = torch.tensor([4 / W, 0.0])  # top-left patch samples 2 px to its right
    out = unpatchify(warp_latents(lat, torch.zeros(1, 4), P, H, W, flow), P, H, W)
    assert torch.equal(out[0, :P // 2, :P // 2], frames[0, :P // 2, 2:P // 2 + 2])  # flat inside the corner
    assert torch.equal(out[0, 2 * P:, :], frames[0, 2 * P:, :])
    assert torch.equal(out[0, :, 2 * P:], frames[0, :, 2 * P:])
    assert gw > 2


def test_prev_warp_needs_prev_frame_and_prev_flow_needs_prev_warp():
    with pytest.raises(ValueError, match="prev_frame"):
        DiTConfig(prev_warp=True)
    with pytest.raises(ValueError, match="prev_warp"):
        DiTConfig(prev_frame=True, prev_flow=True)


# The architecture hashes of the presets with trained checkpoints (default: stages 1-2, warp: stages 3-4,
# flow: the bundled stage-5 model). A checkpoint records its config's hash and loading refuses a mismatch,
# so a change that moves any of these orphans existing weights. Literals, written once; never recompute.
PRESET_HASHES = {"default": "0d8114591cc8e8df", "warp": "4d43747d6d8a19fd", "flow": "8b69983b1a3ecf98"}


@pytest.mark.parametrize("name", sorted(PRESET_HASHES))
def test_preset_config_hashes_are_unchanged(name):
    assert model_config(name).hash() == PRESET_HASHES[name]


def test_warp_config_keeps_older_hashes():
    """Flags a config does not set stay out of its dict, so adding the warp (and flow) fields left the
    older presets' hashes where they were."""
    assert "prev_warp" not in model_config("default").to_dict()
    assert "prev_flow" not in model_config("warp").to_dict()
    assert DiTConfig(prev_frame=True).hash() == PRESET_HASHES["default"]
    assert DiTConfig(prev_frame=True, prev_warp=True).hash() == PRESET_HASHES["warp"]
    assert DiTConfig(prev_frame=True, prev_warp=False, prev_flow=False).hash() == PRESET_HASHES["default"]


def test_bundled_checkpoint_is_the_flow_preset():
    import json
    from pathlib import Path

    import reverie.world.dit as dit_package

    meta = json.loads((Path(dit_package.__file__).parent / "weights" / "default.json").read_text())
    assert meta["config_hash"] == PRESET_HASHES["flow"]
    assert DiTConfig.from_dict(meta["config"]).hash() == PRESET_HASHES["flow"]


@pytest.mark.parametrize("have, grow", [({}, {"prev_warp": True}), ({"prev_warp": True}, {"prev_flow": True}),
                                        ({}, {"prev_warp": True, "prev_flow": True})])
def test_warm_start_grows_identity_heads_from_a_model_without_them(tmp_path, have, grow):
    """A checkpoint without the warp (or its flow) warm-starts a network with it: same outputs."""
    from reverie.world.dit.network import DiTNet
    from reverie.world.dit.train import _warm_start
    from reverie.world.checkpoint import save_state

    plain_cfg = DiTConfig(patch=8, width=48, layers=2, heads=2, temporal_rope=8, row_rope=8, col_rope=8,
                          prev_frame=True, **have)
    plain = build(pretrained=False, config=plain_cfg, seed=4)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in plain.net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    path = tmp_path / "plain.safetensors"
    save_state(path, plain.net.state_dict(), {"config": plain_cfg.to_dict(), "config_hash": plain_cfg.hash()})
    grown_cfg = DiTConfig(**{**plain_cfg.to_dict(), **grow})
    net = DiTNet(grown_cfg)
    info = _warm_start(net, grown_cfg, path)
    assert sorted(info["grown"]) == sorted(grow)
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
    from reverie.world.dit.train import warp_alignment_loss

    target = torch.zeros(1, 3, 4, 6)
    moved = torch.ones(1, 3, 4, 6)
    prev = torch.ones(1, 3, 4, 6)
    prev[0, 1] = 0.0  # dropped: its error must not count
    moved[0, 1] = 5.0
    assert warp_alignment_loss(moved, prev, target).item() == pytest.approx(1.0)
    assert warp_alignment_loss(moved, torch.zeros_like(prev), target).item() == 0.0


def test_training_with_the_warp_loss_moves_the_warp_and_flow_heads(tmp_path):
    """One optimizer step of the tiny preset (warp_weight > 0) changes the zero-initialised warp and flow
    heads."""
    from reverie.world.dit.config import TrainConfig, train_config
    from reverie.world.dit.default import load_net
    from reverie.world.dit.train import train

    from .test_train import _episodes

    cfg = TrainConfig(**{**train_config("tiny").to_dict(), "steps": 1})
    assert cfg.warp_weight > 0
    out = train(_episodes(), cfg, tmp_path / "run", seed=0, progress=False)

    net, _ = load_net(out)
    assert net.warp_out is not None and net.warp_out.weight.abs().sum() > 0
    assert net.flow_out is not None and net.flow_out.weight.abs().sum() > 0
    header = (tmp_path / "run" / "loss.csv").read_text().splitlines()[0]
    assert header.split(",") == ["step", "loss", "x0", "pose", "warp", "lr", "seconds"]


def test_revealed_mask_marks_the_strip_a_shift_reveals():
    frames = _frames(1)
    k = 3
    out, revealed = warp_latents(patchify(frames, P), torch.tensor([[2 * k / W, 0.0, 0.0, 0.0]]), P, H, W,
                                 with_revealed=True)
    mask = to_pixels(revealed, P, H, W)[0]
    assert torch.equal(mask[:, W - k:], torch.ones(H, k, 3)) and torch.equal(mask[:, :W - k], torch.zeros(H, W - k, 3))
    zoom_in = torch.tensor([[0.0, 0.0, -0.1, -0.1]])  # magnifying reveals nothing
    assert warp_latents(patchify(frames, P), zoom_in, P, H, W, with_revealed=True)[1].sum() == 0


def test_reflection_padding_mirrors_the_frame_at_its_edge():
    frames = _frames(1)
    k = 3
    out = warp_latents(patchify(frames, P), torch.tensor([[2 * k / W, 0.0, 0.0, 0.0]]), P, H, W,
                       padding="reflection")
    assert torch.equal(unpatchify(out, P, H, W)[0, :, W - k:], frames[0, :, W - k:].flip(1))


@pytest.mark.parametrize("mode", ["bicubic", "nearest"])
def test_sharper_resamplers_copy_whole_pixel_shifts_exactly(mode):
    frames = _frames(1)
    k = 2
    out = warp_latents(patchify(frames, P), torch.tensor([[2 * k / W, 0.0, 0.0, 0.0]]), P, H, W, mode=mode)
    assert torch.equal(unpatchify(out, P, H, W)[0, :, :W - k], frames[0, :, k:])


def test_nearest_resampling_makes_no_new_colours_on_a_fractional_move():
    frames = _frames(1)
    out = warp_latents(patchify(frames, P), torch.tensor([[0.037, -0.021, -0.05, 0.03]]), P, H, W, mode="nearest")
    pixels = {tuple(p) for p in frames[0].reshape(-1, 3).tolist()}
    assert {tuple(p) for p in unpatchify(out, P, H, W)[0].reshape(-1, 3).tolist()} <= pixels


def test_reveal_head_paints_only_what_the_move_reveals():
    """With `prev_reveal`, every pixel the warp samples from inside the previous frame is that frame, moved;
    the correction (here random) shows only in the revealed strip."""
    cfg = replace(model_config("tiny"), prev_reveal=True, prev_resample="bicubic")
    net = build(pretrained=False, config=cfg).net
    k = 4
    with torch.no_grad():
        torch.nn.init.normal_(net.out.weight, std=0.5)
        net.warp_out.bias.copy_(torch.tensor([2 * k / W, 0.0, 0.0, 0.0]))
    prev_frames = _frames(1, seed=3)
    prev = patchify(prev_frames, P)[None]  # [1, 1, T, P]
    x = torch.randn_like(prev)
    out, _ = net.forward_frames(x, torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long),
                                torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, 1, dtype=torch.bool), prev=prev)
    img = to_pixels(out[0, 0], P, H, W)
    moved = prev_frames[0, :, k:].float() / 127.5 - 1
    torch.testing.assert_close(img[:, :W - k], moved, atol=1e-5, rtol=0)
    assert (img[:, W - k:] - prev_frames[0, :, W - 1:].float() / 127.5 + 1).abs().mean() > 0.05


def test_prev_reveal_needs_prev_warp_and_a_known_resampler():
    with pytest.raises(ValueError, match="prev_warp"):
        DiTConfig(prev_frame=True, prev_reveal=True)
    with pytest.raises(ValueError, match="prev_resample"):
        DiTConfig(prev_frame=True, prev_warp=True, prev_resample="lanczos")
    with pytest.raises(ValueError, match="prev_padding"):
        DiTConfig(prev_frame=True, prev_warp=True, prev_padding="zeros")


def test_composition_fields_warm_start_from_the_same_weights():
    from reverie.world.dit.config import heads_to_grow

    assert heads_to_grow(model_config("reveal"), model_config("flow")) == []
    assert heads_to_grow(model_config("reveal"), model_config("warp")) == ["prev_flow"]
    wider = replace(model_config("flow"), width=512)
    assert heads_to_grow(model_config("reveal"), wider) is None
    assert not {"prev_reveal", "prev_resample", "prev_padding"} & set(model_config("flow").to_dict())


