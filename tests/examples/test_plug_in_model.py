"""The plug-in example: installed from its own pyproject (offline, no deps), found through the entry point,
run through the engine's loop and `reverie bench model`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    import shutil

    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "plugin"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT / "examples" / "plugin", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--target", str(target), str(source)]
    env = dict(os.environ, PIP_NO_CACHE_DIR="1", TMPDIR=str(build))
    subprocess.run(cmd, check=True, capture_output=True, timeout=180, env=env)
    return target


def _env(site: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))


def test_entry_point_is_discovered_and_loads(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    from reverie.world.registry import available, load_model

    assert "example-tiny" in available()
    model = load_model("example-tiny")
    assert model.spec.name == "example-tiny"


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
