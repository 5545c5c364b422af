import json
import signal

from reverie.engine.bench import flood


def test_bench_flood_reports_gaps_joins_and_memory_in_a_json_line(capsys):
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert flood.main(["--tiny", "--seconds", "3", "--sockets", "3", "--rate", "600", "--warmup-s", "1",
                           "--settle-s", "2.5", "--json"]) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr().out.strip().splitlines()
    r = json.loads(out[-1])
    # counts depend on how fast this machine is (the flood is paced, the server reads what it can)
    assert r["flood_messages"] > 0 and r["flood_hellos"] > 0 and r["server_messages"] > 0
    assert r["frames"] > 10 and 0 < r["gap_max_ms"] < 1000 and r["gap_max_ms_alone"] > 0
    assert r["joined"] and r["join_attempts"] >= 1 and r["player_closed"] is None
    assert r["memory_ok"] and 0 < r["rss_before_bytes"] <= r["rss_peak_bytes"] < r["total_budget_bytes"]
    assert r["sessions_after"] == 1 and r["reserved_bytes_after"] == r["session_bytes"]  # the flood's are gone
    assert r["counters"]["errors"] > 0
    assert any(line.startswith("player") for line in out) and any(line.startswith("memory") for line in out)
