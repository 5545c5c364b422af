"""`reverie serve` as a real process: signals, a killed server's recording, deterministic regeneration."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reverie.engine.commands.play import free_port
from reverie.engine.rollout import read_rollout
from reverie.input.bot import run_bot
from reverie.input.net import Connection
from serving import seed_frame

HERE = Path(__file__).parent


def start(tmp_path, *extra):
    np.save(tmp_path / "seed.npy", seed_frame((16, 16, 3)))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "reverie.engine.cli", "serve", "--model", "tinyworld:build", "--endpoint", endpoint,
           "--record-dir", str(tmp_path / "rec"), "--seed-frame", str(tmp_path / "seed.npy"), "--threads", "1",
           "--budget-frames", "8", *extra]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    return proc, endpoint, env


def only_recording(tmp_path) -> Path:
    (rec,) = list((tmp_path / "rec").iterdir())
    return rec


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_server_leaves_a_readable_recording(tmp_path, sig):
    proc, endpoint, _ = start(tmp_path)
    try:
        with Connection(endpoint, record=True, seed=3) as c:
            run_bot(c, 25, [1, 3, 1, 4])
            proc.send_signal(sig)
            assert proc.wait(30) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    finally:
        proc.kill()
    r = read_rollout(only_recording(tmp_path))
    if sig == signal.SIGTERM:
        assert r.complete and len(r) == 26 and "recordings closed" in proc.stderr.read()
    else:
        assert not r.complete and 26 - 5 <= len(r) <= 26   # the writer holds at most a few rows back
    assert np.array_equal(r.frames[0], seed_frame((16, 16, 3))) and r.actions[0] == 0
    assert r.meta.config["model"] == "tinyworld" and r.meta.seed == 3
    shown = r.times["t_client_shown_ns"][1:len(r) - 2]
    assert (shown > r.times["t_server_end_ns"][1:len(r) - 2]).all()
    assert (r.times["t_server_start_ns"][1:] >= r.times["t_client_send_ns"][1:]).all()


def test_a_recording_regenerates_identically_from_its_actions(tmp_path):
    proc, endpoint, env = start(tmp_path)
    try:
        with Connection(endpoint, seed=11) as c:
            run_bot(c, 4, [1])                           # played before recording: the prefix
            c.control("record", True)
            run_bot(c, 12, [3, 3, 1, 7, 0, 26])
            c.control("record", False)
            c.control("stats")
            c.poll(2000)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    rec = only_recording(tmp_path)
    r = read_rollout(rec)
    assert r.complete and r.meta.config["prefix_actions"] == [1] * 4 and r.meta.config["regenerable"]
    out = subprocess.run([sys.executable, "-m", "reverie.engine.cli", "replay", str(rec), "--model", "tinyworld:build",
                          "--json", "--out", str(tmp_path / "again")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["match"] and result["identical_frames"] == len(r) - 1
    again = read_rollout(tmp_path / "again")
    assert np.array_equal(again.frames, r.frames) and np.array_equal(again.actions, r.actions)


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "reverie.engine.cli", "serve", "--model", "no-such-model",
                          "--endpoint", f"tcp://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "cannot load model 'no-such-model'" in out.stderr


def test_play_says_plainly_when_there_is_no_model_to_play(capfd):
    from reverie.engine.cli import main

    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["play", "--model", "no-such-model"]) == 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capfd.readouterr().err
    assert "cannot load model 'no-such-model'" in err and "nothing to play" in err
