"""The reference plug-ins (the tiny example, the Matrix-Game-2.0-shaped and the DIAMOND-shaped models):
installed from their own pyprojects (offline, no deps), found through the entry point, run through the
engine's loop, `reverie check-model`, `reverie bench model` and `reverie bench play`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = {"plugin": "example-tiny", "plugin-matrix": "matrix-shaped", "plugin-diamond": "diamond-shaped"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    import shutil

    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    sources = []
    for folder in PLUGINS:  # copies, so the builds leave nothing in the checkout
        shutil.copytree(ROOT / "examples" / folder, build / folder,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        sources.append(str(build / folder))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(target), *sources]
    env = dict(os.environ, PIP_NO_CACHE_DIR="1", TMPDIR=str(build))
    subprocess.run(cmd, check=True, capture_output=True, timeout=180, env=env)
    return target


def _env(site: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))


def test_entry_points_are_discovered_and_load(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    from reverie.world.registry import available, load_model

    assert set(PLUGINS.values()) <= set(available())
    for name in PLUGINS.values():
        assert load_model(name).spec.name == name


@pytest.mark.parametrize("name", PLUGINS.values())
def test_each_reference_plugin_passes_check_model(installed, name):
    out = subprocess.run([sys.executable, "-m", "reverie.engine.cli", "check-model", name, "--seconds", "0.5",
                          "--json"], capture_output=True, text=True, timeout=300, env=_env(installed))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["model"] == name


def test_bench_play_runs_the_chunked_keys_and_mouse_plugin(installed):
    out = subprocess.run([sys.executable, "-m", "reverie.engine.cli", "bench", "play", "--model", "matrix-shaped",
                          "--frames", "36", "--warmup", "12", "--block", "12", "--policy", "deep-sink", "--json"],
                         capture_output=True, text=True, timeout=300, env=_env(installed))
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["model"] == "matrix-shaped" and result["frames"] == 36 and result["frames_per_chunk"] == 12
    assert result["recording_complete"] and result["latency_p95_ms"] >= result["latency_p50_ms"] > 0


def test_example_script_runs_the_loop(installed):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "plug_in_model.py"), "--frames", "6"],
                         capture_output=True, text=True, timeout=120, env=_env(installed))
    assert out.returncode == 0, out.stderr
    assert "6 frames (48, 64, 3)" in out.stdout


def test_bench_model_runs_a_plugin(installed):
    out = subprocess.run([sys.executable, "-m", "reverie.engine.cli", "bench", "model", "--model", "example-tiny", "--json",
                          "--episodes", "1", "--steps", "37", "--fps-frames", "4"],
                         capture_output=True, text=True, timeout=300, env=_env(installed))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["model"] == "example-tiny" and result["resolution"] == "64x48"
    assert set(result["ar_psnr"]) == {"8", "16", "32"} and result["fps_denoise"] > 0
    assert result["frames_scored"] == 33


def test_bench_cross_measures_annca_on_the_prompted_plugin(installed):
    out = subprocess.run([sys.executable, "-m", "reverie.engine.cli", "bench", "cross", "--model-arg", "cross=ann",
                          "--frames", "12", "--lengths", "60,512", "--repeat", "2", "--json"],
                         capture_output=True, text=True, timeout=300, env=_env(installed))
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    calls = result["calls"]
    assert result["model"] == "matrix-shaped" and calls["count"] > 0 and calls["prompt_tokens"] == 60
    assert 0 < calls["tokens_read"] <= 32 and 0 < calls["mass"] < 1 and calls["rel_err"] > 0
    short, grouped = result["lengths"][0], result["lengths"][-1]
    assert short["rel_err"] == 0 and short["mass"] == 1  # 60 tokens fit in what a query reads: exact
    assert grouped["kind"] == "grouped" and grouped["tokens"] <= 64 and grouped["mass"] > 0.8


def test_bench_cross_refuses_a_model_without_a_prompt(installed):
    out = subprocess.run([sys.executable, "-m", "reverie.engine.cli", "bench", "cross", "--model", "example-tiny"],
                         capture_output=True, text=True, timeout=120, env=_env(installed))
    assert out.returncode != 0 and "takes no prompt" in out.stderr


@pytest.mark.parametrize("cross", ["full", "ann"])
def test_matrix_plugin_declares_what_it_keeps_for_its_prompt(installed, monkeypatch, cross):
    import torch

    monkeypatch.syspath_prepend(str(installed))
    from reverie.world.registry import load_model

    model = load_model("matrix-shaped", cross=cross)
    prompt = model.prompt(torch.full(model.spec.frame_shape, 90, dtype=torch.uint8))
    layers = model._prompt_attention(prompt)
    held = sum(a.k.numel() * a.k.element_size() + a.v.numel() * a.v.element_size() + a.index_bytes for a in layers)
    assert held == model.spec.prompt_cache_bytes
    assert (layers[0].index_bytes > 0) == (cross == "ann")
