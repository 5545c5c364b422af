"""`reverie bench memory` end to end on a tiny random-weights model: shadow figures, `--no-shadow` and
`--attention-only`, each in a JSON line."""

import json

import pytest

pytest.importorskip("vizdoom")

TINY = ["--model-arg", "pretrained=false", "--model-arg", "config=tiny", "--fracs", "1", "--json"]


def _run(capsys, *argv):
    from reverie.engine.cli import main

    assert main(["bench", "memory", *argv, *TINY]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_shadow_figures_and_without_the_shadow_pass_none(capsys):
    args = ("--policies", "full,ann", "--horizon", "24", "--revisit-episodes", "1")
    rows = {r["policy"]: r for r in _run(capsys, *args)["rows"]}
    assert rows["full"]["attn_rel_err"] == 0 and rows["full"]["psnr_vs_full"] == 100
    assert rows["ann"]["attn_rel_err"] is not None and rows["ann"]["psnr_vs_full"] is not None
    bare = {r["policy"]: r for r in _run(capsys, *args, "--no-shadow")["rows"]}
    for name in ("full", "ann"):
        assert bare[name]["attn_rel_err"] is None and bare[name]["psnr_vs_full"] is None
        assert bare[name]["psnr_vs_game"] == pytest.approx(rows[name]["psnr_vs_game"])  # the same rollouts
        assert bare[name]["ms_per_frame"] > 0


def test_attention_only_times_every_policy_after_the_horizon(capsys):
    r = _run(capsys, "--attention-only", "--policies", "full,window,ann", "--horizon", "40", "--chunks", "2")
    assert r["attention_only"] and [row["policy"] for row in r["rows"]] == ["full", "window", "ann"]
    assert all(row["ms_per_frame_at_horizon"] > 0 and row["kv_bytes"] > 0 for row in r["rows"])
