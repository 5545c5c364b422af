"""`reverie bench events` end to end on a tiny random-weights model: every handling reported, in a JSON line."""

import json

import pytest

pytest.importorskip("vizdoom")


def test_bench_events_reports_every_handling_and_a_fresh_start(capsys):
    from reverie.engine.cli import main

    code = main(["bench", "events", "--model-arg", "pretrained=false", "--model-arg", "config=tiny",
                 "--episodes", "1", "--before", "6", "--away", "6", "--back", "3", "--bank-frames", "40", "--json"])
    assert code == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = r["handlings"]
    assert set(rows) == {"fresh", "flush", "cut", "recache", "recall_gain_db"}
    assert list(rows["flush"]["away_psnr"]) == ["1-4", "5-6"]
    for name in ("flush", "cut", "recache"):
        assert rows[name]["recall_psnr"] > 0 and rows[name]["event_ms"] > 0
        assert 0 <= rows[name]["old_place_frames"] <= 6
    assert rows["fresh"]["recall_psnr"] is None and set(rows["recall_gain_db"]) == {"cut", "recache"}


def test_bench_events_refuses_what_it_cannot_run():
    from reverie.engine.cli import main

    for argv, match in ((["--handlings", "teleport"], "unknown handling"), (["--back", "99"], "--back"),
                        (["--away", "0"], ">= 1")):
        with pytest.raises(SystemExit, match=match):
            main(["bench", "events", *argv])
