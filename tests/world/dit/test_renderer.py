from dataclasses import replace

import numpy as np
import pytest
import torch

from reverie.engine.sampler import FrameContext, chunk_noise, next_sample, sample_chunk
from reverie.engine.session import Session
from reverie.world.checkpoint import CheckpointError, save_state
from reverie.world.dit.data import Episode
from reverie.world.dit.default import DiTWorldModel, build, load_checkpoint
from reverie.world.dit.release import release
from reverie.world.dit.render_train import RENDER_PRESETS, make_batch, train_renderer
from reverie.world.dit.renderer import Renderer, RendererConfig, karras_sigmas, sampling_sigmas, sigma_to_t, t_to_sigma
from reverie.world.dit.train import train
from reverie.world.dit.config import train_config

TINY = RendererConfig(channels=(8, 16), blocks=1, cond_dim=16)


def _episodes(n=2, length=30, seed=0):
    rng = np.random.default_rng(seed)
    return [Episode(rng.integers(0, 256, (length, 48, 64, 3), dtype=np.uint8), rng.integers(0, 27, length),
                    np.zeros((length, 3)), name=f"ep{i}") for i in range(n)]


def _inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = [torch.rand(b, 3, 48, 64, generator=g) * 2 - 1 for _ in range(5)]
    return imgs, torch.full((b,), 0.02), torch.zeros(b, dtype=torch.long)


def test_schedule_and_noise_level_maps():
    cfg = RendererConfig()
    s = karras_sigmas(cfg)
    assert len(s) == 3 and s[0] == pytest.approx(5.0) and s[-1] == pytest.approx(0.002)
    assert s == sorted(s, reverse=True)
    for sigma in (0.002, 0.3, 5.0):
        assert t_to_sigma(sigma_to_t(sigma)) == pytest.approx(sigma)
    with pytest.raises(ValueError):
        t_to_sigma(1.0)


def test_sampling_levels_and_their_checks():
    assert sampling_sigmas(RendererConfig()) == [1.0, 0.2]
    assert sampling_sigmas(RendererConfig(sample_sigmas=())) == karras_sigmas(RendererConfig())
    for bad in ({"sample_sigmas": (0.2, 1.0)}, {"sample_sigmas": (1.0, 0.0)}, {"start": "middle"},
                {"sampler": "ode"}):
        with pytest.raises(ValueError):
            RendererConfig(**bad)


def test_first_level_starts_from_the_guess_plus_noise(tmp_path):
    dit_path = _tiny_dit_checkpoint(tmp_path)
    model = build(checkpoint=release(dit_path, tmp_path / "b.safetensors", renderer=_tiny_renderer_run(tmp_path, dit_path)))
    seen = []
    forward = model.renderer.forward
    model.renderer.forward = lambda x, sigma, guess, *a: seen.append((x, sigma, guess)) or forward(x, sigma, guess, *a)
    from reverie.memory import MemoryManager

    mem = MemoryManager.create(model.spec, policy="window")
    ctx = FrameContext(model.spec)
    mem.begin_chunk()
    sample_chunk(model, mem, torch.tensor([0]), seed=3, chunk_index=0, context=ctx)
    mem.end_chunk()
    (x1, s1, g1), (x2, s2, g2) = seen
    noise = chunk_noise(3, 0, 0, (1, *model.spec.latent_shape))
    torch.testing.assert_close(x1, g1 + float(s1[0]) * model._images(noise))  # guess + sigma0 * noise
    torch.testing.assert_close(g2, g1)  # the DiT's guess is made once per frame
    assert float(s2[0]) == pytest.approx(0.2)


def test_fresh_renderer_is_the_edm_skip_and_tiny_noise_returns_the_input():
    torch.manual_seed(0)
    r = Renderer(TINY).eval()
    (x, g, w, p1, p2), cs, a = _inputs()
    for sigma in (0.01, 1.0, 5.0):
        d, _ = r(x, torch.full((2,), sigma), g, w, p1, p2, cs, a)
        c_skip = 0.25 / (sigma ** 2 + 0.25)
        torch.testing.assert_close(d, c_skip * x)  # zero-initialised output: D = c_skip x
    torch.nn.init.normal_(r.out.weight)
    d, _ = r(x, torch.full((2,), 1e-5), g, w, p1, p2, cs, a)
    torch.testing.assert_close(d, x, atol=1e-3, rtol=0)  # at sigma -> 0 the frame is the input


@pytest.mark.parametrize("anchor", ["none", "warped"])
def test_raw_target_recovers_the_clean_frame(anchor):
    r = Renderer(replace(TINY, anchor=anchor))
    x0, warped = (torch.rand(2, 3, 48, 64) * 2 - 1 for _ in range(2))
    sigma = torch.tensor([0.1, 2.0])
    x = x0 + sigma[:, None, None, None] * torch.randn_like(x0)
    target = r.target(x0, x, sigma, warped)
    with torch.no_grad():  # a network that outputs exactly its target denoises to the clean frame
        r.network = lambda inputs, cond: target
        d, _ = r(x, sigma, warped, warped, warped, warped, torch.ones(2), torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(d, x0)


def test_warped_anchor_diffuses_the_difference_from_the_warped_frame():
    r = Renderer(replace(TINY, anchor="warped"))
    warped = torch.rand(1, 3, 48, 64) * 2 - 1
    d, _ = r(warped.clone(), torch.ones(1), warped, warped, warped, warped, torch.ones(1),
             torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(d, warped)  # zero-initialised output, noise-free input at the anchor: the copy
    with pytest.raises(ValueError, match="anchor"):
        replace(TINY, anchor="guess")


def test_euler_step_keeps_the_implied_noise():
    spec = build(pretrained=False, config="tiny").spec
    x0, eps = torch.randn(1, 4, 8), torch.randn(1, 4, 8)
    t, t_next = 0.8, 0.3
    x = (1 - t) * x0 + t * eps
    euler = type(spec)(**{**{f: getattr(spec, f) for f in spec.__slots__}, "sampler": "euler"})
    torch.testing.assert_close(next_sample(euler, x, x0, t, t_next, 0, 0, 1), (1 - t_next) * x0 + t_next * eps)
    renoise = next_sample(spec, x, x0, t, t_next, 0, 0, 1)  # a fresh draw, not the implied noise
    assert not torch.allclose(renoise, (1 - t_next) * x0 + t_next * eps)


def _tiny_dit_checkpoint(tmp_path):
    cfg = train_config("tiny").with_overrides(steps=2, checkpoint_every=2)
    return train(_episodes(), cfg, tmp_path / "dit", progress=False)


def _tiny_renderer_run(tmp_path, dit_path, steps=3, resume=False, out="render"):
    dit, _, _ = load_checkpoint(dit_path)
    cfg = RENDER_PRESETS["render-tiny"].with_overrides(steps=steps)
    return train_renderer(_episodes(), dit, cfg, tmp_path / out, progress=False, resume=resume)


def test_training_batch_shapes_and_context_noise(tmp_path):
    dit, _, _ = load_checkpoint(_tiny_dit_checkpoint(tmp_path))
    from reverie.world.dit.data import WindowSampler

    cfg = RENDER_PRESETS["render-tiny"]
    sample = WindowSampler(_episodes(), cfg.data_config()).sample(np.random.default_rng(0), 2)
    batch = make_batch(dit, sample, cfg, torch.Generator().manual_seed(0))
    n = 2 * cfg.frames_per_window
    for k in ("x", "x0", "guess", "warped", "prev1", "prev2"):
        assert batch[k].shape == (n, 3, 48, 64), k
    assert batch["sigma"].shape == batch["context_sigma"].shape == (n,)
    assert (batch["context_sigma"] > 0).all() and (batch["context_sigma"] <= cfg.context_max).all()
    frames = torch.from_numpy(sample["frames"][:, cfg.revisit_frames:]).movedim(-1, -3).float() / 127.5 - 1
    torch.testing.assert_close(batch["x0"], frames[:, -cfg.frames_per_window:].flatten(0, 1))
    noise = (batch["prev1"] - frames[:, -cfg.frames_per_window - 1:-1].flatten(0, 1)).flatten(1).std(1)
    torch.testing.assert_close(noise, batch["context_sigma"], rtol=0.1, atol=1e-3)  # noise of the declared level


def test_renderer_training_resumes_exactly(tmp_path):
    dit_path = _tiny_dit_checkpoint(tmp_path)
    straight = _tiny_renderer_run(tmp_path, dit_path, steps=4, out="a")
    _tiny_renderer_run(tmp_path, dit_path, steps=2, out="b")
    resumed = _tiny_renderer_run(tmp_path, dit_path, steps=4, out="b", resume=True)
    from safetensors.torch import load_file

    a, b = load_file(str(straight)), load_file(str(resumed))
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)


def test_bundled_renderer_plays_deterministically_and_guesses_once_per_frame(tmp_path, monkeypatch):
    dit_path = _tiny_dit_checkpoint(tmp_path)
    rpath = _tiny_renderer_run(tmp_path, dit_path)
    bundled = release(dit_path, tmp_path / "bundled.safetensors", renderer=rpath)
    net, renderer, meta = load_checkpoint(bundled)
    assert renderer is not None and meta["renderer"] == RENDER_PRESETS["render-tiny"].renderer.to_dict()
    model = build(checkpoint=bundled)
    assert model.spec.frame_context == 2 and model.spec.sampler == "renoise"
    assert model.spec.steps == pytest.approx([sigma_to_t(s) for s in renderer.cfg.sample_sigmas])
    calls = []
    step = model.net.step
    monkeypatch.setattr(model.net, "step", lambda *a, **k: calls.append(k["commit"]) or step(*a, **k))
    seed_frame = np.full((48, 64, 3), 90, np.uint8)
    frames = [Session(model, seed_frame, policy="window").step(3).frame for _ in range(2)]
    assert (frames[0] == frames[1]).all()
    # per frame: one seed commit, then one guess pass (not one per sampler step) and one commit pass
    assert calls == [True, False, True] * 2
    alone = build(checkpoint=bundled, use_renderer=False)
    assert alone.spec.frame_context == 1 and alone.spec.steps == (1.0,)


def test_renderer_over_another_dit_is_refused(tmp_path):
    dit_path = _tiny_dit_checkpoint(tmp_path)
    rpath = _tiny_renderer_run(tmp_path, dit_path)
    from reverie.world.checkpoint import read_metadata
    from safetensors.torch import load_file

    meta = dict(read_metadata(rpath), dit_config_hash="0" * 16)
    save_state(tmp_path / "other.safetensors", load_file(str(rpath)), meta)
    with pytest.raises(CheckpointError, match="trained over a DiT"):
        release(dit_path, tmp_path / "x.safetensors", renderer=tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a renderer"):
        release(dit_path, tmp_path / "y.safetensors", renderer=dit_path)


def test_sample_chunk_starts_at_the_top_level_scale(tmp_path):
    dit_path = _tiny_dit_checkpoint(tmp_path)
    model = build(checkpoint=release(dit_path, tmp_path / "b.safetensors", renderer=_tiny_renderer_run(tmp_path, dit_path)))
    seen = []
    denoise = model.denoise
    model.denoise = lambda x, t, *a, **k: seen.append((t, float(x.std()))) or denoise(x, t, *a, **k)
    from reverie.memory import MemoryManager

    mem = MemoryManager.create(model.spec, policy="window")
    ctx = FrameContext(model.spec)
    mem.begin_chunk()
    sample_chunk(model, mem, torch.tensor([0]), seed=1, chunk_index=0, context=ctx)
    mem.end_chunk()
    assert seen[0][0] == model.spec.steps[0]
    assert seen[0][1] == pytest.approx(model.spec.steps[0], rel=0.1)  # t0 * unit noise


def test_self_forcing_feeds_the_renderers_own_frames_as_history(tmp_path):
    dit_path = _tiny_dit_checkpoint(tmp_path)
    dit, _, _ = load_checkpoint(dit_path)
    from reverie.world.dit.data import WindowSampler

    cfg = RENDER_PRESETS["render-tiny"].with_overrides(frames_per_window=1, rollout_frames=2)
    renderer = Renderer(cfg.renderer).eval()
    torch.nn.init.normal_(renderer.out.weight, std=0.1)  # a renderer that changes what it is given
    sample = WindowSampler(_episodes(), cfg.data_config()).sample(np.random.default_rng(0), 2)
    batch = make_batch(dit, sample, cfg, torch.Generator().manual_seed(0), renderer)
    frames = torch.from_numpy(sample["frames"][:, cfg.revisit_frames:]).movedim(-1, -3).float() / 127.5 - 1
    torch.testing.assert_close(batch["x0"], frames[:, -1])  # the target stays the game's frame
    noise = batch["context_sigma"][:, None, None, None]
    own1 = batch["prev1"] - frames[:, -2]
    assert (own1.flatten(1).std(1) > 2 * batch["context_sigma"]).all()  # not the real frame plus its noise
    with pytest.raises(ValueError):
        RENDER_PRESETS["render-tiny"].with_overrides(rollout_frames=2)  # needs frames_per_window=1
    out = train_renderer(_episodes(), dit, cfg.with_overrides(steps=2), tmp_path / "sf", progress=False)
    assert out.is_file()
