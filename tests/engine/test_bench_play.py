import json
import signal

from reverie.engine.cli import main


def test_bench_play_prints_the_json_line_last(capsys):
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["bench", "play", "--tiny", "--frames", "12", "--warmup", "3", "--block", "4", "--json"]) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    for key in ("fps", "latency_p50_ms", "latency_p95_ms", "fps_recording", "frames"):
        assert key in result
    assert result["frames"] == 12 and result["fps"] > 0 and result["fps_recording"] > 0
    assert result["latency_p95_ms"] >= result["latency_p50_ms"] > 0
    assert result["recorded_steps"] == 1 + 3 + 12 and result["recording_complete"]
    assert any(line.startswith("plain") for line in out) and any(line.startswith("recording") for line in out)
