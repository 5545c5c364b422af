"""`reverie rollout`: a model replays a rollout's actions from its first frames into a new rollout."""

import json

import numpy as np

from reverie.engine.cli import main
from reverie.engine.rollout import RolloutMeta, RolloutWriter, read_rollout


def _context(path, n=10):
    rng = np.random.default_rng(0)
    with RolloutWriter(path, RolloutMeta(source="game", seed=3, frame_shape=(48, 64, 3), map="maze")) as w:
        for t in range(n):
            w.append(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), int(rng.integers(0, 27)), (t, 0.0, 0.0))
        w.close(preview=False)
    return read_rollout(path)


TINY = ["--model", "default", "--model-arg", "pretrained=false", "--model-arg", "config=tiny", "--no-preview"]


def test_rollout_from_context_actions_is_deterministic(tmp_path, capsys):
    ctx = _context(tmp_path / "ctx")
    for name in ("a", "b"):
        assert main(["rollout", *TINY, "--context", str(tmp_path / "ctx"), "--context-frames", "3",
                     "--out", str(tmp_path / name), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["generated"] == 7 and summary["steps"] == 10
    a, b = read_rollout(tmp_path / "a"), read_rollout(tmp_path / "b")
    assert a.meta.source == "model:default"
    assert np.array_equal(a.frames[:3], ctx.frames[:3])        # the real context is kept
    assert np.array_equal(a.actions, ctx.actions)              # the context's own actions replayed
    assert a.frames_sha256 == b.frames_sha256                  # same seed -> same frames


def test_rollout_with_action_file(tmp_path):
    _context(tmp_path / "ctx")
    (tmp_path / "moves.json").write_text(json.dumps(["forward", "turn_left", "forward+strafe_right"]))
    assert main(["rollout", *TINY, "--context", str(tmp_path / "ctx"), "--actions", str(tmp_path / "moves.json"),
                 "--out", str(tmp_path / "out")]) == 0
    out = read_rollout(tmp_path / "out")
    assert out.action_names[4:] == ["forward", "turn_left", "forward+strafe_right"]
    assert len(out) == 7


def test_rollout_errors_are_clear(tmp_path, capsys):
    assert main(["rollout", *TINY, "--context", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    _context(tmp_path / "ctx")
    (tmp_path / "bad.json").write_text("[\"fly\"]")
    assert main(["rollout", *TINY, "--context", str(tmp_path / "ctx"), "--actions", str(tmp_path / "bad.json"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "fly" in capsys.readouterr().err
