"""Smoke tests of `reverie bench memory`, `reverie bench longrun` and `reverie train-salience` on tiny
models (the test-only ToyModel, and the default DiT's tiny config with random weights)."""

import json

import pytest

from reverie.engine.cli import main
from reverie.memory import MemoryManager

from toymodel import ToyModel, register

register()


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_memory_on_a_toy_model(capsys):
    assert main(["bench", "memory", "--model", "memtest-toy", "--no-game", "--horizon", "16", "--fracs", "1,0.25",
                 "--policies", "full,window,tempcache,dual", "--set", "position_span=64", "--json"]) == 0
    out = last_json(capsys)
    assert out["horizon"] == 16 and out["set"] == {"position_span": 64}
    rows = {(r["policy"], r["budget_frac"]): r for r in out["rows"]}
    assert set(rows) == {("full", 1.0), ("window", 1.0), ("window", 0.25), ("tempcache", 1.0), ("tempcache", 0.25),
                         ("dual", 1.0), ("dual", 0.25)}
    full = rows[("full", 1.0)]
    assert full["attn_rel_err"] == 0.0 and abs(full["retained_mass"] - 1.0) < 1e-6 and full["psnr_vs_full"] == 100.0
    assert rows[("window", 1.0)]["attn_rel_err"] < 1e-5  # the window holds the whole horizon
    small = rows[("window", 0.25)]
    assert small["attn_rel_err"] > 1e-3 and small["retained_mass"] < 1.0 and small["psnr_vs_full"] < 100.0
    spec = ToyModel().spec
    for (policy, frac), r in rows.items():
        assert r["kv_bytes"] <= frac * (16 + 1) * spec.kv_bytes_per_frame
        assert r["ms_per_frame"] > 0 and r["ms_per_frame_at_horizon"] > 0 and r["psnr_vs_game"] is None


def test_bench_memory_with_the_real_game_and_tiny_dit(capsys):
    pytest.importorskip("vizdoom")
    assert main(["bench", "memory", "--model-arg", "pretrained=false", "--model-arg", "config=tiny", "--horizon", "6",
                 "--fracs", "0.5", "--policies", "full,spatial", "--json"]) == 0
    out = last_json(capsys)
    assert all(r["psnr_vs_game"] is not None for r in out["rows"])


def test_bench_longrun_on_a_toy_model(capsys):
    assert main(["bench", "longrun", "--model", "memtest-toy", "--frames", "80", "--window", "10", "--horizon", "16",
                 "--json"]) == 0
    out = last_json(capsys)
    assert out["frames"] == 80 and out["kv_bytes_last"] == out["kv_bytes_after_fill"] <= out["budget_bytes"]
    assert out["max_position_seen"] <= out["max_position"]
    assert out["ms_ratio_last_first"] > 0 and "rss_growth" in out
    # the paired control: chunks from a frozen copy of the fill state timed beside the live ones
    assert out["paired_from_frame"] is not None and out["ms_ratio_paired"] > 0


def test_bench_longrun_with_frames_waiting_for_a_demotion_batch(capsys):
    """`dual` at this budget keeps up to two frames waiting for a batch: they come and go every frame, yet
    the fill is found, the paired control runs, and the most the cache held stays within the budget."""
    assert main(["bench", "longrun", "--model", "memtest-toy", "--frames", "96", "--window", "10", "--horizon", "64",
                 "--json"]) == 0
    out = last_json(capsys)
    assert out["kv_bytes_last"] == out["kv_bytes_after_fill"] < out["kv_max"] <= out["budget_bytes"]
    assert out["fill_frame"] < 96 - 20 and out["ms_ratio_paired"] > 0


def test_bench_longrun_without_the_paired_control(capsys):
    assert main(["bench", "longrun", "--model", "memtest-toy", "--frames", "60", "--window", "10", "--horizon", "16",
                 "--no-paired", "--json"]) == 0
    out = last_json(capsys)
    assert out["ms_ratio_paired"] is None and out["paired_from_frame"] is None


def test_train_salience_writes_a_head_the_policies_load(capsys, tmp_path):
    path = tmp_path / "salience.safetensors"
    assert main(["train-salience", "--model", "memtest-toy", "--source", "random", "--frames", "24", "--episodes", "1",
                 "--steps", "20", "--out", str(path), "--json"]) == 0
    out = last_json(capsys)
    assert len(out["layers"]) == 2 and all(-1.0 <= r["heldout_rank_corr"] <= 1.0 for r in out["layers"])
    mem = MemoryManager.create(ToyModel().spec, policy="dual", budget_frac=0.5, horizon_frames=16,
                               salience_weights=str(path))
    assert mem.stats()["scorer_trained"] is True


def test_revisit_out_range_is_checked():
    import argparse

    from reverie.engine.bench.memory import _step_range

    assert _step_range("40,60") == (40, 60)
    for bad in ("60,40", "0,5", "a,b", "7"):
        with pytest.raises(argparse.ArgumentTypeError):
            _step_range(bad)
