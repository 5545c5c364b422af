import json

import pytest
import torch

from reverie.world.checkpoint import CheckpointError, save_state
from reverie.world.dit.config import DiTConfig
from reverie.world.dit.default import DEFAULT_CHECKPOINT, build
from reverie.world.registry import load_model


def _save(model, path):
    cfg = model.cfg
    return save_state(path, model.net.state_dict(), {"config": cfg.to_dict(), "config_hash": cfg.hash()},
                      dtype=torch.float16)


def test_round_trip_fp16(tmp_path):
    model = build(pretrained=False, config="tiny", seed=3)
    path = _save(model, tmp_path / "m.safetensors")
    loaded = build(checkpoint=path)
    assert loaded.cfg == model.cfg
    for name, t in model.net.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[name], t.half().float())
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["config_hash"] == model.cfg.hash() and len(side["sha256"]) == 64


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        build(checkpoint=tmp_path / "nope.safetensors")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_is_clear(tmp_path, damage):
    path = _save(build(pretrained=False, config="tiny"), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="corrupt"):
        build(checkpoint=path)


def test_mismatched_checkpoint_is_clear(tmp_path):
    from reverie.world.checkpoint import load_state

    path = _save(build(pretrained=False, config="tiny"), tmp_path / "m.safetensors")
    other = build(pretrained=False, config=DiTConfig(patch=8, width=64, layers=2, heads=2, temporal_rope=8,
                                                       row_rope=8, col_rope=8, prev_frame=True, prev_warp=True,
                                                       prev_flow=True))
    with pytest.raises(CheckpointError, match="shapes"):
        load_state(path, {n: t.shape for n, t in other.net.state_dict().items()})
    fewer = {n: t.shape for n, t in list(build(pretrained=False, config="tiny").net.state_dict().items())[:-2]}
    with pytest.raises(CheckpointError, match="unexpected"):
        load_state(path, fewer)


def test_config_hash_mismatch_is_clear(tmp_path):
    model = build(pretrained=False, config="tiny")
    path = save_state(tmp_path / "m.safetensors", model.net.state_dict(),
                      {"config": model.cfg.to_dict(), "config_hash": "0" * 16})
    with pytest.raises(CheckpointError, match="hash"):
        build(checkpoint=path)


def test_registry_default_without_bundled_weights(monkeypatch, tmp_path):
    import reverie.world.dit.default as default

    monkeypatch.setattr(default, "DEFAULT_CHECKPOINT", tmp_path / "default.safetensors")
    with pytest.raises(CheckpointError, match="no trained default model is bundled"):
        load_model("default")
    assert load_model("default", pretrained=False, config="tiny").spec.name == "default"


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no bundled weights in this checkout")
def test_bundled_weights_load_small_and_fast():
    import time

    t0 = time.perf_counter()
    model = load_model("default")
    assert time.perf_counter() - t0 < 10  # generous here; `reverie bench model` reports load_s
    assert DEFAULT_CHECKPOINT.stat().st_size <= 50e6
    assert model.meta.get("command", "").startswith("reverie train")
    assert model.spec.tics_per_step == 4 and model.spec.real_time_fps == 8.75  # the game's speed: 35 tics/s


def test_release_sets_default_steps_and_keeps_weights(tmp_path):
    from reverie.world.dit.release import release

    model = build(pretrained=False, config="tiny", seed=2)
    src = _save(model, tmp_path / "run" / "model.safetensors")
    dst = release(src, tmp_path / "weights" / "default.safetensors", steps=(1.0, 0.5))
    shipped = build(checkpoint=dst)
    assert shipped.spec.steps == (1.0, 0.5)
    assert build(checkpoint=dst, steps=(1.0,)).spec.steps == (1.0,)
    for name, t in build(checkpoint=src).net.state_dict().items():
        assert torch.equal(shipped.net.state_dict()[name], t)
    assert json.loads(dst.with_suffix(".json").read_text())["released_from"][0]["file"] == str(src)
    with pytest.raises(ValueError):
        release(src, tmp_path / "bad.safetensors", steps=(0.5, 1.0))


def test_release_averages_checkpoints_of_one_run(tmp_path):
    from reverie.world.checkpoint import CheckpointError
    from reverie.world.dit.release import release

    a, b = build(pretrained=False, config="tiny", seed=1), build(pretrained=False, config="tiny", seed=2)
    cfg = a.cfg
    pa = save_state(tmp_path / "a.safetensors", a.net.state_dict(), {"config": cfg.to_dict(), "config_hash": cfg.hash(), "step": 10})
    pb = save_state(tmp_path / "b.safetensors", b.net.state_dict(), {"config": cfg.to_dict(), "config_hash": cfg.hash(), "step": 20})
    avg = build(checkpoint=release([pb, pa], tmp_path / "avg.safetensors"))
    for name, t in a.net.state_dict().items():
        torch.testing.assert_close(avg.net.state_dict()[name], (t + b.net.state_dict()[name]) / 2)
    assert avg.meta["averaged_steps"] == [10, 20] and avg.meta["step"] == 20
    other = build(pretrained=False, config=DiTConfig(patch=8, width=48, layers=2, heads=2, temporal_rope=8,
                                                     row_rope=8, col_rope=8, mlp_ratio=2.0))
    po = save_state(tmp_path / "o.safetensors", other.net.state_dict(),
                    {"config": other.cfg.to_dict(), "config_hash": other.cfg.hash(), "step": 5})
    with pytest.raises(CheckpointError):
        release([pa, po], tmp_path / "bad.safetensors")


def test_release_soups_fine_tunes_with_weights_and_grown_heads(tmp_path):
    from dataclasses import replace

    from reverie.world.checkpoint import CheckpointError, read_metadata
    from reverie.world.dit.release import release

    flow_cfg = build(pretrained=False, config="tiny").cfg
    warp_cfg = replace(flow_cfg, prev_flow=False)
    warp, flow = build(pretrained=False, config=warp_cfg, seed=1), build(pretrained=False, config=flow_cfg, seed=2)
    torch.nn.init.normal_(flow.net.flow_out.weight)  # a trained flow head, not its zero start
    pw = save_state(tmp_path / "w.safetensors", warp.net.state_dict(),
                    {"config": warp_cfg.to_dict(), "config_hash": warp_cfg.hash(), "step": 900, "command": "a"})
    pf = save_state(tmp_path / "f.safetensors", flow.net.state_dict(),
                    {"config": flow_cfg.to_dict(), "config_hash": flow_cfg.hash(), "step": 600, "command": "b"})
    out = release([pw, pf], tmp_path / "soup.safetensors", steps=(1.0,), weights=(3.0, 1.0))
    soup = build(checkpoint=out)
    assert soup.cfg == flow_cfg  # the richer source's architecture and metadata
    fw, ww = flow.net.state_dict(), warp.net.state_dict()
    assert set(fw) - set(ww) == {"flow_out.weight", "flow_out.bias"}
    for name, t in soup.net.state_dict().items():  # the warp model counts as holding a zero flow head
        want = 0.25 * fw[name].float() + (0.75 * ww[name].float() if name in ww else 0.0)
        torch.testing.assert_close(t.float(), want, atol=2e-3, rtol=0)
    meta = read_metadata(out)
    assert [(r["weight"], r["step"], r["command"]) for r in meta["released_from"]] == [(0.75, 900, "a"), (0.25, 600, "b")]
    assert "averaged_steps" not in meta and meta["sampler_steps"] == [1.0]
    from reverie.world.dit.release import main

    args = [str(pw), str(pf), "--weights", "1", "1", "--steps", "1.0", "--out", str(tmp_path / "cli.safetensors")]
    assert main(args) == 0
    assert read_metadata(tmp_path / "cli.safetensors")["release_command"] == "python -m reverie.world.dit.release " + " ".join(args)
    with pytest.raises(ValueError, match="one non-negative weight per checkpoint"):
        release([pw, pf], tmp_path / "bad.safetensors", weights=(1.0,))
    with pytest.raises(ValueError, match="one non-negative weight per checkpoint"):
        release([pw, pf], tmp_path / "bad.safetensors", weights=(1.0, -1.0))
    other_cfg = replace(warp_cfg, mlp_ratio=2.0)
    other = build(pretrained=False, config=other_cfg)
    po = save_state(tmp_path / "o.safetensors", other.net.state_dict(),
                    {"config": other_cfg.to_dict(), "config_hash": other_cfg.hash(), "step": 5})
    with pytest.raises(CheckpointError, match="differ only by the heads"):
        release([pf, po], tmp_path / "bad.safetensors", weights=(0.5, 0.5))


def test_copy_path_arguments_change_the_copy_path_and_the_recorded_hash(tmp_path):
    path = _save(build(pretrained=False, config="tiny"), tmp_path / "m.safetensors")
    plain, nearest = build(checkpoint=path), build(checkpoint=path, resample="nearest", padding="reflection")
    assert nearest.net.cfg.prev_resample == "nearest" and plain.net.cfg.prev_resample == "bilinear"
    assert nearest.net.cfg.prev_padding == "reflection" and plain.net.cfg.prev_padding == "border"
    assert nearest.meta["config_hash"] == nearest.net.cfg.hash() != plain.meta["config_hash"]
    with pytest.raises(ValueError, match="prev_resample"):
        build(checkpoint=path, resample="lanczos")
