import csv
import json

import numpy as np
import pytest
import torch

from reverie.world.dit.config import TrainConfig, train_config
from reverie.world.dit.data import Episode, WindowSampler, pose_deltas
from reverie.world.dit.default import build
from reverie.world.dit.train import block_causal_mask, train


def _episodes(n=2, length=40, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        frames = rng.integers(0, 256, (length, 48, 64, 3), dtype=np.uint8)
        poses = np.zeros((length, 3))
        poses[:, 0] = np.concatenate((np.arange(length // 2), np.arange(length // 2)[::-1])) * 4.0  # go and return
        eps.append(Episode(frames, rng.integers(0, 27, length), poses, name=f"ep{i}"))
    return eps


def test_pose_deltas_are_egocentric():
    poses = np.array([[0, 0, 90.0], [0, 5, 90.0], [0, 5, 100.0]])
    d = pose_deltas(poses)
    np.testing.assert_allclose(d[1], [5, 0, 0], atol=1e-5)  # moved along the heading: forward
    np.testing.assert_allclose(d[2], [0, 0, 10], atol=1e-5)


def test_mask_structure():
    m = block_causal_mask(3, 1)
    # noisy frame 2 (index 1+3+2) sees the extra frame, clean 0 and 1, itself; not clean 2
    assert m[6].tolist() == [True, True, True, False, False, False, True]
    assert m[1].tolist() == [True, True, False, False, False, False, False]  # clean 0: extra + itself


def test_sampler_finds_revisits():
    cfg = TrainConfig(model="tiny", window=5, revisit_frames=2, revisit_prob=1.0, revisit_min_gap=4,
                      revisit_max_dist=5.0, episode_steps=40)
    s = WindowSampler(_episodes(), cfg).sample(np.random.default_rng(0), 16)
    assert s["frames"].shape == (16, 7, 48, 64, 3)
    for b in range(16):
        start = s["pos"][b, 2]
        for j in np.flatnonzero(s["revisit_valid"][b]):
            assert s["pos"][b, j] <= start - 4  # far enough back
    assert s["revisit_valid"].any()
    # every slot's predecessor is the episode frame before it; none for frame 0 or empty revisit slots
    assert not s["has_prev"][~np.concatenate((s["revisit_valid"], np.ones((16, 5), bool)), 1)].any()
    assert (s["has_prev"] == (s["pos"] > 0) & np.concatenate((s["revisit_valid"], np.ones((16, 5), bool)), 1)).all()
    window_prev, window = s["prev_frames"][:, 3:], s["frames"][:, 2:-1]
    assert (window_prev == window).all()  # inside the window, the predecessor is the slot before


def test_sampler_can_take_the_nearest_revisits():
    cfg = TrainConfig(model="tiny", window=5, revisit_frames=2, revisit_prob=1.0, revisit_min_gap=4,
                      revisit_max_dist=40.0, episode_steps=40, revisit_nearest=True)
    eps = _episodes(n=1)
    s = WindowSampler(eps, cfg).sample(np.random.default_rng(1), 32)
    poses = eps[0].poses
    checked = 0
    for b in range(32):
        last, start = s["pos"][b, -1], s["pos"][b, 2]
        picked = s["pos"][b, :2][s["revisit_valid"][b]]
        if len(picked) < 2:
            continue
        earlier = np.arange(start - 4)
        dist = np.abs(poses[earlier, 0] - poses[last, 0])
        qualifying = np.sort(dist[dist < 40.0])
        np.testing.assert_allclose(np.sort(np.abs(poses[picked, 0] - poses[last, 0])), qualifying[:2])
        checked += 1
    assert checked > 0


def test_training_is_reproducible_and_resumes(tmp_path):
    cfg = train_config("tiny")
    eps = _episodes()
    a = train(eps, cfg, tmp_path / "a", seed=5, progress=False, keep_snapshots=1)
    b = train(eps, cfg, tmp_path / "b", seed=5, progress=False)
    # checkpoints every 2 steps, only the latest kept, identical to the final model
    assert [p.name for p in (tmp_path / "a" / "snapshots").iterdir()] == [f"step{cfg.steps}.safetensors"]
    assert (tmp_path / "a" / "snapshots" / f"step{cfg.steps}.safetensors").read_bytes() == a.read_bytes()
    ma, mb = build(checkpoint=a), build(checkpoint=b)
    for name, t in ma.net.state_dict().items():
        assert torch.equal(t, mb.net.state_dict()[name])
    rows = list(csv.DictReader(open(tmp_path / "a" / "loss.csv")))
    assert [int(r["step"]) for r in rows] == list(range(cfg.steps))
    # resume: stop half way, continue, same weights as the uninterrupted run
    half = TrainConfig(**{**cfg.to_dict(), "steps": cfg.steps})
    train(eps, TrainConfig(**{**cfg.to_dict(), "steps": 2}), tmp_path / "c", seed=5, progress=False)
    c = train(eps, half, tmp_path / "c", seed=5, resume=True, progress=False)
    mc = build(checkpoint=c)
    meta = json.loads((tmp_path / "c" / "model.json").read_text())
    assert meta["step"] == cfg.steps
    for name, t in ma.net.state_dict().items():
        torch.testing.assert_close(t, mc.net.state_dict()[name])


def test_train_refuses_eval_maps():
    from reverie.world.dit.data import generate_episodes

    with pytest.raises(ValueError, match="held out"):
        generate_episodes(TrainConfig(model="tiny", maps=("freedoom2-map02",), episode_steps=20), seed=0)


def test_parallel_recording_gives_the_same_episodes_in_the_same_order():
    pytest.importorskip("vizdoom")
    from reverie.world.dit.data import generate_episodes

    cfg = TrainConfig(model="tiny", maps=("maze",), drivers=("random", "wander"), episodes_per=2, episode_steps=20)
    one = generate_episodes(cfg, seed=3, progress=False)
    two = generate_episodes(cfg, seed=3, progress=False, workers=2)
    assert [e.name for e in one] == [e.name for e in two] and len(one) == 4
    for a, b in zip(one, two):
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
    with pytest.raises(ValueError, match="workers"):
        generate_episodes(cfg, seed=3, progress=False, workers=0)
    assert generate_episodes(TrainConfig(model="tiny", maps=()), seed=3, progress=False, workers=2) == []


def test_steps_within_fits_the_schedule_to_the_time_left():
    from reverie.world.dit.train import steps_within

    assert steps_within(22, 0.5, 100.0, 2400) == 222  # 200 more steps of half a second
    assert steps_within(22, 0.5, 1e6, 2400) == 2400  # never longer than planned
    assert steps_within(22, 0.5, -5.0, 2400) == 23  # out of time: this step is the last
    assert steps_within(22, 0.0, 10.0, 2400) == 2400


def test_time_budget_shortens_the_run_and_records_its_steps(tmp_path):
    from reverie.world.checkpoint import read_metadata
    from reverie.world.dit.train import CALIBRATION_STEPS

    cfg = TrainConfig(**{**train_config("tiny").to_dict(), "steps": 10_000, "checkpoint_every": 1000})
    path = train(_episodes(), cfg, tmp_path / "b", seed=5, progress=False, time_budget_s=0.01)
    meta = read_metadata(path)
    steps = 2 + CALIBRATION_STEPS + 1  # out of time at calibration: that step is the last
    assert meta["step"] == meta["train"]["steps"] == steps and meta["time_budget_s"] == 0.01
    rows = list(csv.DictReader(open(tmp_path / "b" / "loss.csv")))
    assert int(rows[-1]["step"]) == steps - 1


def test_prev_frame_augmentation():
    from reverie.world.dit.train import augment_prev

    prev = torch.rand(8, 5, 12, 48) * 2 - 1
    off = TrainConfig(model="tiny")
    assert augment_prev(prev, off, torch.Generator().manual_seed(0)) is prev  # off by default
    cfg = TrainConfig(model="tiny", prev_aug_prob=0.5, prev_aug_max=0.3)
    out = augment_prev(prev, cfg, torch.Generator().manual_seed(0))
    changed = (out != prev).flatten(2).any(-1)
    assert 0 < changed.float().mean() < 1  # some frames corrupted, some left clean
    # a corrupted frame is (1 - s) prev + s noise with s <= 0.3: still mostly the frame
    assert ((out - prev).abs().flatten(2).amax(-1) < 0.3 * 6).all()
    with pytest.raises(ValueError, match="augmentation"):
        TrainConfig(model="tiny", prev_aug_max=1.5)


def test_warm_start_loads_weights_and_refuses_other_architectures(tmp_path):
    from reverie.world.checkpoint import CheckpointError

    cfg = train_config("tiny")
    eps = _episodes()
    a = train(eps, cfg, tmp_path / "a", seed=5, progress=False)
    one = TrainConfig(**{**cfg.to_dict(), "steps": 1, "lr": 1e-12, "warmup": 1})
    b = train(eps, one, tmp_path / "b", seed=9, progress=False, init=a)
    ma, mb = build(checkpoint=a), build(checkpoint=b)
    for name, t in ma.net.state_dict().items():  # one near-zero step from a's weights, not a fresh init
        torch.testing.assert_close(mb.net.state_dict()[name], t, atol=2e-3, rtol=0)
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    assert meta["init"]["file"] == str(a) and meta["init"]["step"] == cfg.steps
    bad = TrainConfig(**{**cfg.to_dict(), "model": "default", "steps": 1})
    with pytest.raises(CheckpointError, match="same architecture"):
        train(eps, bad, tmp_path / "c", seed=0, progress=False, init=a)


def test_train_only_leaves_every_other_module_as_it_was_warm_started(tmp_path):
    cfg = train_config("tiny")
    eps = _episodes()
    a = train(eps, TrainConfig(**{**cfg.to_dict(), "steps": 1}), tmp_path / "a", seed=5, progress=False)
    head = TrainConfig(**{**cfg.to_dict(), "steps": 2, "lr": 1e-2, "train_only": ["flow_out"]})
    b = train(eps, head, tmp_path / "b", seed=9, progress=False, init=a)
    sa, sb = build(checkpoint=a).net.state_dict(), build(checkpoint=b).net.state_dict()
    moved = {name for name in sa if not torch.equal(sa[name], sb[name])}
    assert moved and all(name.startswith("flow_out.") for name in moved)
    with pytest.raises(ValueError, match="not modules"):
        train(eps, TrainConfig(**{**head.to_dict(), "train_only": ["nope"]}), tmp_path / "c", seed=0,
              progress=False, init=a)


def test_overrides_replace_fields_and_refuse_unknown_ones(tmp_path, capsys):
    from reverie.engine.cli import main

    cfg = train_config("tiny").with_overrides(revisit_prob=0.9, maps=["maze"], lr=None)
    assert cfg.revisit_prob == 0.9 and cfg.maps == ("maze",) and cfg.lr == train_config("tiny").lr
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        train_config("tiny").with_overrides(revisit_probability=0.9)
    # on the command line: a clear message and exit code 2 before any data is made
    assert main(["train", "--config", "tiny", "--set", "revisit_probability=0.9", "--out", str(tmp_path)]) == 2
    assert "unknown TrainConfig field" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--set", "steps=\"many\"", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "model.safetensors").exists()


def test_prev_rollout_feeds_the_models_own_predictions():
    from reverie.world.dit.config import model_config
    from reverie.world.dit.network import DiTNet
    from reverie.world.dit.train import make_batch, rollout_prev

    cfg = TrainConfig(model="tiny", window=5, revisit_frames=2, revisit_prob=1.0, revisit_min_gap=4,
                      revisit_max_dist=5.0, episode_steps=40, prev_rollout_passes=1, prev_rollout_prob=1.0)
    mcfg = model_config("tiny")
    torch.manual_seed(0)
    net = DiTNet(mcfg)
    sample = WindowSampler(_episodes(), cfg).sample(np.random.default_rng(0), 3)
    batch = make_batch(sample, cfg, mcfg, torch.Generator().manual_seed(1))
    out = rollout_prev(net, batch, cfg, torch.Generator().manual_seed(2))
    r, w = 2, 5
    # recompute pass 1 by hand: pure noise at level 1 for the noisy copies, real predecessors
    gen = torch.Generator().manual_seed(2)
    x, t = batch["x"].clone(), batch["t"].clone()
    x[:, r + w:] = torch.randn(x[:, r + w:].shape, generator=gen)
    t[:, r + w:] = 1.0
    with torch.no_grad():
        pred = net.forward_doubled(x, t, batch["actions"], batch["pos"], r, batch["revisit_valid"],
                                   prev=batch["prev"])[0][:, r + w:]
    torch.testing.assert_close(out["prev"][:, r + 1:r + w], pred[:, :-1])      # clean copies
    torch.testing.assert_close(out["prev"][:, r + w + 1:], pred[:, :-1])      # noisy copies
    assert torch.equal(out["prev"][:, :r + 1], batch["prev"][:, :r + 1])       # revisits, frame 0: real
    assert torch.equal(out["prev"][:, r + w], batch["prev"][:, r + w])
    off = rollout_prev(net, batch, TrainConfig(model="tiny"), torch.Generator())
    assert off is batch
    assert torch.equal(out["x"], batch["x"])  # without prev_rollout_context the history stays real

    ctx_cfg = TrainConfig(**{**cfg.to_dict(), "prev_rollout_context": True})
    own = rollout_prev(net, batch, ctx_cfg, torch.Generator().manual_seed(2))
    torch.testing.assert_close(own["prev"], out["prev"])                   # same pass, same inputs
    torch.testing.assert_close(own["x"][:, r + 1:r + w], pred[:, 1:])      # commit copies: own predictions
    assert (own["t"][:, r + 1:r + w] == 0).all()
    assert torch.equal(own["x"][:, :r + 1], batch["x"][:, :r + 1])         # revisits, frame 0: real
    assert torch.equal(own["x"][:, r + w:], batch["x"][:, r + w:])         # the noisy copies to learn from


def test_prev_rollout_keeps_dropped_previous_frames_dropped():
    from reverie.world.dit.config import model_config
    from reverie.world.dit.network import DiTNet
    from reverie.world.dit.train import make_batch, rollout_prev

    cfg = TrainConfig(model="tiny", window=5, revisit_frames=0, episode_steps=40, prev_drop_prob=0.5,
                      prev_rollout_passes=2, prev_rollout_prob=1.0)
    mcfg = model_config("tiny")
    torch.manual_seed(0)
    net = DiTNet(mcfg)
    with torch.no_grad():  # the output heads start at zero; move them so predictions are not plain copies
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = make_batch(WindowSampler(_episodes(), cfg).sample(np.random.default_rng(0), 4), cfg, mcfg,
                       torch.Generator().manual_seed(1))
    dropped = batch["prev"].flatten(-2).abs().amax(-1) == 0
    assert dropped.any() and (~dropped).any()
    out = rollout_prev(net, batch, cfg, torch.Generator().manual_seed(2))
    assert (out["prev"].flatten(-2).abs().amax(-1) == 0).equal(dropped)


def test_prev_drop_zeroes_a_share_of_previous_frames():
    from reverie.world.dit.config import model_config
    from reverie.world.dit.train import make_batch

    mcfg = model_config("tiny")
    sample = WindowSampler(_episodes(), TrainConfig(model="tiny", window=5, episode_steps=40)).sample(
        np.random.default_rng(0), 16)
    kept = make_batch(sample, TrainConfig(model="tiny", window=5), mcfg, torch.Generator().manual_seed(0))
    drop = make_batch(sample, TrainConfig(model="tiny", window=5, prev_drop_prob=0.5), mcfg,
                      torch.Generator().manual_seed(0))
    zero_kept = (kept["prev"] == 0).flatten(2).all(-1)
    zero_drop = (drop["prev"] == 0).flatten(2).all(-1)
    assert (zero_drop >= zero_kept).all()                  # dropping only ever adds zeroed inputs
    share = (zero_drop & ~zero_kept).float().mean()
    assert 0.3 < share < 0.7
    r = 2  # revisit slots first, then the clean and the noisy copies of the 5 window frames
    assert torch.equal(zero_drop[:, r:r + 5], zero_drop[:, r + 5:])  # a frame's two copies agree


def test_training_step_builds_every_tensor_on_the_batch_device():
    # the meta device has no data: any tensor the step makes on the CPU instead of the batch's device fails
    from reverie.world.dit.config import model_config
    from reverie.world.dit.network import DiTNet
    from reverie.world.dit.train import losses, make_batch, rollout_prev

    cfg = TrainConfig(model="tiny", window=5, revisit_frames=2, revisit_prob=1.0, revisit_min_gap=4,
                      revisit_max_dist=5.0, episode_steps=40, warp_weight=1.0, prev_rollout_passes=1,
                      prev_rollout_prob=1.0, prev_rollout_context=True, prev_drop_prob=0.3, prev_aug_prob=0.5,
                      prev_aug_max=0.2, degrade_prob=0.5, context_aug_prob=0.5)
    mcfg = model_config("tiny")
    net = DiTNet(mcfg).to("meta")
    sample = WindowSampler(_episodes(), cfg).sample(np.random.default_rng(0), 2)
    batch = make_batch(sample, cfg, mcfg, torch.Generator().manual_seed(1), device="meta")  # built there
    assert all(v.device.type == "meta" for v in batch.values())
    parts = losses(net, rollout_prev(net, batch, cfg, torch.Generator().manual_seed(2)), cfg)
    assert set(parts) == {"x0", "warp", "pose", "loss", "pred"}
    assert all(v.device.type == "meta" for v in parts.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the meta-device test covers placement)")
def test_a_batch_built_on_the_gpu_holds_the_cpu_batch():
    from reverie.world.dit.config import model_config
    from reverie.world.dit.train import make_batch

    cfg = TrainConfig(model="tiny", window=5, revisit_frames=2, revisit_prob=1.0, revisit_min_gap=4,
                      revisit_max_dist=5.0, episode_steps=40, prev_drop_prob=0.3, prev_aug_prob=0.5,
                      prev_aug_max=0.2, degrade_prob=0.5, context_aug_prob=0.5)
    sample = WindowSampler(_episodes(), cfg).sample(np.random.default_rng(0), 3)
    here = make_batch(sample, cfg, model_config("tiny"), torch.Generator().manual_seed(1))
    there = make_batch(sample, cfg, model_config("tiny"), torch.Generator().manual_seed(1), device="cuda")
    for name, t in here.items():  # the same draws; the GPU's arithmetic may round differently
        torch.testing.assert_close(there[name].cpu(), t, atol=1e-5, rtol=0)


def test_bf16_training_tracks_fp32_and_says_so(tmp_path):
    from reverie.world.checkpoint import read_metadata

    cfg, eps = train_config("tiny"), _episodes()
    a = train(eps, cfg, tmp_path / "fp32", seed=5, progress=False)
    b = train(eps, cfg, tmp_path / "bf16", seed=5, progress=False, precision="bf16")
    assert read_metadata(b)["precision"] == "bf16" and read_metadata(a)["precision"] == "fp32"
    assert read_metadata(b)["device"] == "cpu"
    la = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "fp32" / "loss.csv"))]
    lb = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "bf16" / "loss.csv"))]
    assert np.isfinite(lb).all() and np.allclose(la, lb, rtol=0.05)  # same data and noise, bf16 rounding
    wa, wb = build(checkpoint=a).net.state_dict(), build(checkpoint=b).net.state_dict()
    assert max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa) < 0.02
    with pytest.raises(ValueError, match="precision"):
        train(eps, cfg, tmp_path / "fp8", seed=5, progress=False, precision="fp8")
    assert not (tmp_path / "fp8" / "model.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_train_cli_refuses_a_device_it_cannot_use(tmp_path, capsys):
    from reverie.engine.cli import main

    assert main(["train", "--config", "tiny", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_matches_the_cpu_run_and_resumes(tmp_path):
    from reverie.world.checkpoint import read_metadata

    cfg, eps = train_config("tiny"), _episodes()
    cpu = build(checkpoint=train(eps, cfg, tmp_path / "cpu", seed=5, progress=False)).net.state_dict()
    gpu_path = train(eps, cfg, tmp_path / "gpu", seed=5, progress=False, device="cuda")
    assert read_metadata(gpu_path)["device"].startswith("cuda:")
    gpu = build(checkpoint=gpu_path).net.state_dict()
    for name, t in cpu.items():  # same windows and noise; only float rounding differs (TF32 off by default;
        torch.testing.assert_close(gpu[name], t, atol=5e-3, rtol=0)  # on an H200: 2.3e-3 at most)
    train(eps, TrainConfig(**{**cfg.to_dict(), "steps": 2}), tmp_path / "resumed", seed=5, progress=False,
          device="cuda")
    resumed = train(eps, cfg, tmp_path / "resumed", seed=5, resume=True, progress=False, device="cuda")
    for name, t in gpu.items():
        torch.testing.assert_close(build(checkpoint=resumed).net.state_dict()[name], t, atol=1e-3, rtol=0)
    bf16 = train(eps, cfg, tmp_path / "bf16", seed=5, progress=False, device="cuda", precision="bf16")
    assert read_metadata(bf16)["precision"] == "bf16"
