import pytest
import torch

from reverie.kernels.rope import apply_rope_ref
from reverie.kernels.view import RopeSpec
from reverie.world.dit.config import DiTConfig, model_config
from reverie.world.dit.default import build, patchify, unpatchify
from reverie.world.dit.rope import apply_temporal_rope
from reverie.world.dit.train import block_causal_mask

from .fullcache import FullCache


def test_temporal_rope_matches_kernels_reference():
    x = torch.randn(3, 40, 24)
    pos = torch.arange(40) * 7 + 3
    ours = apply_temporal_rope(x, pos, 16, 10000.0)
    ref = apply_rope_ref(x, pos, RopeSpec(dims=16, theta=10000.0))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_patchify_round_trip():
    frames = torch.randint(0, 256, (3, 48, 64, 3), dtype=torch.uint8)
    lat = patchify(frames, 8)
    assert lat.shape == (3, 48, 192)
    assert torch.equal(unpatchify(lat, 8, 48, 64), frames)
    # one patch = one 8x8 block of the image
    assert torch.allclose(lat[0, 9].reshape(8, 8, 3), frames[0, 8:16, 8:16].float() / 127.5 - 1)


def test_spec_describes_network():
    model = build(pretrained=False, config="tiny")
    cfg = model.cfg
    assert model.spec.tokens_per_frame == 48 and model.spec.latent_shape == (48, 192)
    assert model.spec.layers == cfg.layers and model.spec.heads * model.spec.head_dim == cfg.width
    assert model.spec.rope.dims == cfg.temporal_rope
    assert model.spec.has_pose_head


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        DiTConfig(width=50, heads=3)
    with pytest.raises(ValueError):
        DiTConfig(frame_h=50)
    with pytest.raises(ValueError):
        model_config("nope")


def _randomize(net):
    # adaLN-Zero starts with zero gates/outputs; give every weight a value so the test can fail.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def _memory(kind, spec):
    if kind == "test-cache":
        return FullCache(spec)
    from reverie.memory import MemoryManager

    return MemoryManager.create(spec, policy="full")


@pytest.mark.parametrize("kind", ["test-cache", "memory-full"])
def test_cached_inference_equals_training_forward(kind):
    """Frame-by-frame through a cache (denoise with clean history, commit) == one masked forward."""
    model = build(pretrained=False, config="tiny")
    _randomize(model.net)
    n = 6
    frames = torch.randint(0, 256, (n, 48, 64, 3), dtype=torch.uint8)
    clean = model.encode(frames)
    actions = torch.randint(0, 27, (n,))
    noisy = torch.randn(n, *model.spec.latent_shape)
    t_noisy = 0.75
    cache = _memory(kind, model.spec)
    cached_x0, cached_pose = [], []
    assert model.spec.frame_context == 1
    for i in range(n):
        cache.begin_chunk()
        ctx = clean[i - 1:i] if i else None
        x0 = model.denoise(noisy[i:i + 1], t_noisy, actions[i:i + 1], cache, context=ctx)
        pose = model.commit(clean[i:i + 1], actions[i:i + 1], cache, context=ctx)
        cache.end_chunk()
        cached_x0.append(x0)
        cached_pose.append(pose)
    # the same thing in one pass: clean copies (committed) then noisy copies, block-causal mask
    x = torch.cat((clean, noisy))[None]
    t = torch.cat((torch.zeros(n), torch.full((n,), t_noisy)))[None]
    a = torch.cat((actions, actions))[None]
    pos = torch.cat((torch.arange(n), torch.arange(n)))[None] + 100  # RoPE is relative: offset is free
    mask = block_causal_mask(n, n_extra=0)[None]
    prev = torch.cat((torch.zeros_like(clean[:1]), clean[:-1]))
    with torch.no_grad():
        out, pose = model.net.forward_frames(x, t, a, pos, mask, prev=torch.cat((prev, prev))[None])
    torch.testing.assert_close(torch.cat(cached_x0), out[0, n:], atol=1e-4, rtol=1e-4)
    scale = torch.tensor(model.cfg.pose_scale)
    torch.testing.assert_close(torch.cat(cached_pose) / scale, pose[0, :n], atol=1e-4, rtol=1e-4)


def test_doubled_forward_equals_masked_forward():
    """The training fast path (no masked blocks computed) equals the plain masked forward."""
    model = build(pretrained=False, config="tiny")
    _randomize(model.net)
    r, w, b = 2, 5, 3
    n = r + 2 * w
    x = torch.randn(b, n, *model.spec.latent_shape)
    t = torch.rand(b, n)
    a = torch.randint(0, 27, (b, n))
    pos = torch.cat((torch.tensor([[1, 3]] * b), torch.arange(20, 20 + w).repeat(b, 2)), 1)
    valid = torch.tensor([[True, True], [False, True], [False, False]])
    prev = torch.randn_like(x)
    with torch.no_grad():
        ref, ref_pose = model.net.forward_frames(x, t, a, pos, block_causal_mask(w, r, valid), prev=prev)
        out, pose = model.net.forward_doubled(x, t, a, pos, r, valid, prev=prev)
    torch.testing.assert_close(out[:, r:], ref[:, r:], atol=1e-4, rtol=1e-4)  # hidden extras may differ
    torch.testing.assert_close(pose[:, r:], ref_pose[:, r:], atol=1e-4, rtol=1e-4)


def test_prev_frame_path_copies_the_previous_frame_at_init():
    """With `prev_frame`, an untrained network (zero output layer) predicts the previous frame exactly:
    the copy path starts at repeat-last, training learns the correction."""
    model = build(pretrained=False, config="tiny")
    cache = _memory("memory-full", model.spec)
    frames = model.encode(torch.randint(0, 256, (2, 48, 64, 3), dtype=torch.uint8))
    cache.begin_chunk()
    model.commit(frames[:1], torch.zeros(1, dtype=torch.long), cache)
    cache.end_chunk()
    cache.begin_chunk()
    x0 = model.denoise(torch.randn(1, *model.spec.latent_shape), 1.0, torch.ones(1, dtype=torch.long), cache,
                       context=frames[:1])
    torch.testing.assert_close(x0, frames[:1])


def test_network_without_prev_frame_refuses_one():
    from reverie.world.dit.network import DiTNet

    net = DiTNet(DiTConfig(patch=16, width=32, layers=1, heads=2, temporal_rope=4, row_rope=4, col_rope=4))
    x = torch.zeros(1, 2, 12, 768)
    with pytest.raises(ValueError, match="prev_frame"):
        net.forward_frames(x, torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2),
                           torch.ones(1, 2, 2, dtype=torch.bool), prev=x)
