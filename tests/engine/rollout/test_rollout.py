import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reverie.engine.rollout import (BackgroundRolloutWriter, RolloutError, RolloutMeta, RolloutWriter, read_rollout,
                            read_rollouts)
from reverie.engine.rollout.format import FRAMES, FRAMES_PARTIAL, META, STEPS
from reverie.world.actions import DOOM_ACTIONS

SHAPE = (6, 8, 3)


def _meta(**kw):
    return RolloutMeta(**{"source": "game", "seed": 11, "frame_shape": SHAPE, "map": "maze",
                          "config": {"k": 1}, **kw})


def _frames(n):
    rng = np.random.default_rng(n)
    return rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def _write(path, n=10, close=True, preview=False):
    frames = _frames(n)
    w = RolloutWriter(path, _meta())
    for t in range(n):
        w.append(frames[t], t % len(DOOM_ACTIONS), (t, -t, 1.5 * t), done=t == n - 1,
                 t_server_start_ns=1000 + t, extra={"kv_bytes": t} if t % 2 else None)
    if close:
        w.close(preview=preview)
    else:
        w.abort()
    return frames


def test_write_read_round_trip(tmp_path):
    frames = _write(tmp_path / "r")
    r = read_rollout(tmp_path / "r")
    assert r.complete and len(r) == 10 and r.frames.dtype == np.uint8
    assert np.array_equal(r.frames, frames)
    assert r.actions.tolist() == [t % len(DOOM_ACTIONS) for t in range(10)]
    assert r.action_names[1] == DOOM_ACTIONS.name(1)
    assert np.array_equal(r.poses, np.array([(t, -t, 1.5 * t) for t in range(10)], float))
    assert r.done.tolist() == [False] * 9 + [True]
    assert r.times["t_server_start_ns"].tolist() == list(range(1000, 1010))
    assert (r.times["t_client_shown_ns"] == -1).all() and (r.times["wall_ns"] > 0).all()
    assert r.extras[1] == {"kv_bytes": 1} and r.extras[0] is None
    assert r.frames_sha256 == hashlib.sha256(frames.tobytes()).hexdigest()
    assert r.meta.seed == 11 and r.meta.map == "maze" and r.meta.config == {"k": 1}
    assert json.loads((tmp_path / "r" / META).read_text())["config_sha256"] == _meta(config={"k": 1}).config_sha256
    assert _meta(config={"k": 2}).config_sha256 != r.meta.config_sha256
    # the finished frames file is a plain .npy
    assert np.array_equal(np.load(tmp_path / "r" / FRAMES), frames)
    s = r.summary()
    assert s["steps"] == 10 and s["frame_shape"] == list(SHAPE) and s["source"] == "game" and s["complete"]


def test_rollouts_from_before_declared_controls_read_as_doom(tmp_path):
    """Rollouts written before action spaces were declared hold only Doom's action names."""
    _write(tmp_path / "r")
    meta = json.loads((tmp_path / "r" / META).read_text())
    assert meta["controls"] == DOOM_ACTIONS.describe()
    del meta["controls"]
    (tmp_path / "r" / META).write_text(json.dumps(meta))
    assert read_rollout(tmp_path / "r").meta.action_space == DOOM_ACTIONS
    meta["action_space"] = ["noop", "jump"]                      # names of no space we know
    (tmp_path / "r" / META).write_text(json.dumps(meta))
    with pytest.raises(RolloutError, match="not Doom's"):
        read_rollout(tmp_path / "r")


def test_model_source_and_missing_pose(tmp_path):
    w = RolloutWriter(tmp_path / "m", _meta(source="model:default"))
    w.append(_frames(1)[0], 0, None)
    w.close(preview=False)
    r = read_rollout(tmp_path / "m")
    assert r.meta.source == "model:default" and np.isnan(r.poses).all()
    with pytest.raises(ValueError):
        _meta(source="camera")


def test_empty_rollout_reads(tmp_path):
    RolloutWriter(tmp_path / "e", _meta()).close()
    r = read_rollout(tmp_path / "e")
    assert len(r) == 0 and r.complete and r.frames.shape == (0, *SHAPE)


def test_writer_rejects_bad_input(tmp_path):
    w = RolloutWriter(tmp_path / "w", _meta())
    with pytest.raises(ValueError, match="uint8"):
        w.append(np.zeros(SHAPE, np.float32), 0)
    with pytest.raises(ValueError, match="uint8"):
        w.append(np.zeros((5, 8, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="action index"):
        w.append(np.zeros(SHAPE, np.uint8), 99)
    with pytest.raises(ValueError, match="unknown timestamp"):
        w.append(np.zeros(SHAPE, np.uint8), 0, t_sever_ns=1)
    w.close(preview=False)
    assert len(read_rollout(tmp_path / "w")) == 0  # nothing half-written
    with pytest.raises(FileExistsError):
        RolloutWriter(tmp_path / "w", _meta())


def test_aborted_writer_is_a_readable_partial(tmp_path):
    frames = _write(tmp_path / "p", close=False)
    assert (tmp_path / "p" / FRAMES_PARTIAL).exists()
    r = read_rollout(tmp_path / "p")
    assert not r.complete and len(r) == 10 and np.array_equal(r.frames, frames)
    assert r.summary()["status"] == "partial"


def test_partial_takes_the_longest_consistent_prefix(tmp_path):
    frames = _write(tmp_path / "p", close=False)
    d = tmp_path / "p"
    size = os.path.getsize(d / FRAMES_PARTIAL)
    with open(d / FRAMES_PARTIAL, "r+b") as f:  # frame 7 cut in half
        f.truncate(size - 2 * frames[0].nbytes - frames[0].nbytes // 2)
    r = read_rollout(d)
    assert len(r) == 7 and np.array_equal(r.frames, frames[:7])
    lines = (d / STEPS).read_text().splitlines()
    (d / STEPS).write_text("\n".join(lines[:5]) + "\n" + lines[5][:9])  # torn line 6
    r = read_rollout(d)
    assert len(r) == 5 and np.array_equal(r.frames, frames[:5]) and r.actions.tolist() == [0, 1, 2, 3, 4]


def test_truncated_frames_of_a_finished_rollout_is_an_error(tmp_path):
    _write(tmp_path / "t")
    f = tmp_path / "t" / FRAMES
    with open(f, "r+b") as fh:
        fh.truncate(os.path.getsize(f) - 10)
    with pytest.raises(RolloutError, match="truncated"):
        read_rollout(tmp_path / "t")


def test_garbage_in_steps_is_an_error(tmp_path):
    _write(tmp_path / "g")
    lines = (tmp_path / "g" / STEPS).read_text().splitlines()
    lines[3] = "{not json"
    (tmp_path / "g" / STEPS).write_text("\n".join(lines) + "\n")
    with pytest.raises(RolloutError, match="line 4"):
        read_rollout(tmp_path / "g")


@pytest.mark.parametrize("edit,msg", [
    (lambda r: r.update(action=400), "bad action"),
    (lambda r: r.update(name="forward", action=0), "does not match"),
    (lambda r: r.update(t=7), "step index"),
    (lambda r: r.pop("pose"), "missing field"),
    (lambda r: r.update(pose=[1, 2]), "bad pose"),
])
def test_inconsistent_step_rows_are_errors(tmp_path, edit, msg):
    _write(tmp_path / "s")
    lines = (tmp_path / "s" / STEPS).read_text().splitlines()
    row = json.loads(lines[2])
    edit(row)
    lines[2] = json.dumps(row)
    (tmp_path / "s" / STEPS).write_text("\n".join(lines) + "\n")
    with pytest.raises(RolloutError, match=msg):
        read_rollout(tmp_path / "s")


def test_missing_or_extra_rows_are_errors(tmp_path):
    _write(tmp_path / "x")
    lines = (tmp_path / "x" / STEPS).read_text().splitlines()
    (tmp_path / "x" / STEPS).write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RolloutError, match="says 10 steps"):
        read_rollout(tmp_path / "x")


@pytest.mark.parametrize("name", [META, FRAMES, STEPS])
def test_missing_files_are_errors(tmp_path, name):
    _write(tmp_path / "m")
    (tmp_path / "m" / name).unlink()
    with pytest.raises(RolloutError, match="missing"):
        read_rollout(tmp_path / "m")


def test_not_a_directory_and_bad_meta(tmp_path):
    with pytest.raises(RolloutError, match="no such"):
        read_rollout(tmp_path / "nothing")
    _write(tmp_path / "b")
    (tmp_path / "b" / META).write_text("{\"format\": \"other\"}")
    with pytest.raises(RolloutError, match="not a reverie rollout"):
        read_rollout(tmp_path / "b")
    (tmp_path / "b" / META).write_text("{trunc")
    with pytest.raises(RolloutError, match="corrupt JSON"):
        read_rollout(tmp_path / "b")


def test_wrong_dtype_or_shape_is_an_error(tmp_path):
    _write(tmp_path / "d")
    np.save(tmp_path / "d" / FRAMES, np.zeros((10, *SHAPE), np.float32))
    with pytest.raises(RolloutError, match="uint8"):
        read_rollout(tmp_path / "d")
    np.save(tmp_path / "d" / FRAMES, np.zeros((10, 8, 6, 3), np.uint8))
    with pytest.raises(RolloutError, match="frame shape"):
        read_rollout(tmp_path / "d")
    (tmp_path / "d" / FRAMES).write_bytes(b"garbage" * 10)
    with pytest.raises(RolloutError, match="not a .npy"):
        read_rollout(tmp_path / "d")


def test_flipped_frame_byte_fails_the_checksum(tmp_path):
    _write(tmp_path / "c")
    f = tmp_path / "c" / FRAMES
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(RolloutError, match="sha256"):
        read_rollout(tmp_path / "c")
    assert len(read_rollout(tmp_path / "c", verify=False)) == 10


_KILLED_WRITER = """
import sys, time, numpy as np
from reverie.engine.rollout import RolloutWriter, RolloutMeta
w = RolloutWriter(sys.argv[1], RolloutMeta(source="game", seed=0, frame_shape=(6, 8, 3)))
t = 0
while True:
    w.append(np.full((6, 8, 3), t % 256, np.uint8), t % 27, (t, 0, 0))
    t += 1
    if t == 50:
        print("ready", flush=True)
"""


def test_writer_killed_with_sigkill_leaves_a_loadable_prefix(tmp_path):
    out = tmp_path / "k"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(out)], stdout=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[3], text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    r = read_rollout(out)
    assert not r.complete and len(r) >= 50
    assert all((r.frames[t] == t % 256).all() for t in range(len(r)))
    assert r.actions.tolist() == [t % 27 for t in range(len(r))]
    assert r.poses[:, 0].tolist() == list(range(len(r)))


def test_background_writer_matches_the_plain_writer(tmp_path):
    frames = _frames(20)
    with BackgroundRolloutWriter(tmp_path / "bg", _meta(), max_pending=4) as w:
        buf = np.empty(SHAPE, np.uint8)
        for t in range(20):
            buf[...] = frames[t]  # the caller reuses its buffer: the writer must have copied it
            w.append(buf, 1, (0, 0, t), t_server_end_ns=t)
    r = read_rollout(tmp_path / "bg")
    assert r.complete and np.array_equal(r.frames, frames) and r.times["t_server_end_ns"].tolist() == list(range(20))


def test_background_writer_finishes_on_its_thread_when_not_waited_for(tmp_path):
    frames = _frames(5)
    w = BackgroundRolloutWriter(tmp_path / "bgn", _meta())
    for t in range(5):
        w.append(frames[t], 2, None)
    assert w.close(preview=False, wait=False) in (None, w.summary)
    with pytest.raises(RuntimeError, match="after close"):
        w.append(frames[0], 2, None)
    summary = w.close(timeout=30)  # a second close only waits
    assert not w.running and summary["steps"] == 5 and read_rollout(tmp_path / "bgn").complete


def test_background_writer_reports_errors(tmp_path):
    w = BackgroundRolloutWriter(tmp_path / "bge", _meta())
    w.append(np.zeros((2, 2, 3), np.uint8), 0)
    with pytest.raises(RuntimeError, match="rollout writer failed"):
        w.close()


def test_preview_mp4_decodes(tmp_path):
    av = pytest.importorskip("av")
    _write(tmp_path / "v", n=12, preview=True)
    r = read_rollout(tmp_path / "v")
    assert r.has_preview
    with av.open(str(tmp_path / "v" / "preview.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 12
    h, w = decoded[0].shape[:2]
    assert h % 2 == 0 and w % 2 == 0 and h >= 6 * 32 and w >= 8 * 32


def test_read_rollouts_finds_episode_folders(tmp_path):
    _write(tmp_path / "set" / "ep000")
    _write(tmp_path / "set" / "ep001", n=4)
    assert [len(r) for r in read_rollouts(tmp_path / "set")] == [10, 4]
    with pytest.raises(RolloutError, match="a folder of 2 rollouts"):
        read_rollout(tmp_path / "set")
    with pytest.raises(RolloutError):
        read_rollouts(tmp_path / "set" / "ep000" / "nope")



@pytest.mark.parametrize("config, driver, line", [
    ({"driver": {"name": "wander", "seed": 3}}, "wander", "driver     wander (seed 3)"),
    ({"policy": {"name": "go-and-return", "seed": 4}}, "go-and-return", "driver     go-and-return (seed 4)"),  # old
    ({"policy": "dual"}, None, "policy     dual"),  # an engine recording's memory policy, not a driver
])
def test_inspect_names_the_driver_of_new_and_old_rollouts(tmp_path, capsys, config, driver, line):
    """Game rollouts store their exploration driver under "driver"; before the rename it was "policy"."""
    from reverie.engine.cli import main
    from reverie.engine.rollout.game import recorded_driver

    w = RolloutWriter(tmp_path / "r", _meta(config=config))
    w.append(_frames(1)[0], 0, (0, 0, 0))
    w.close(preview=False)
    found = recorded_driver(read_rollout(tmp_path / "r").meta.config)
    assert (found or {}).get("name") == driver
    assert main(["inspect", str(tmp_path / "r")]) == 0
    assert line in capsys.readouterr().out.splitlines()
