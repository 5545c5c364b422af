import argparse
import json

from reverie.engine.bench import kernels as bench

REQUIRED = {"op", "backend", "shape", "ms", "tflops", "gbps", "peak_mb"}


def test_quick_cpu_bench_prints_json_last(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    bench.add_arguments(parser)
    assert bench.run(parser.parse_args(["--quick", "--repeat", "1", "--json", "--device", "cpu"])) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["device"].startswith("cpu")
    ops = {r["op"] for r in result["rows"]}
    assert {"attend-dense", "attend-int8-gather-bias", "attend-int4-gather-bias", "quantize-int4",
            "participation-scores", "segment-similarity"} <= ops
    for row in result["rows"]:
        assert REQUIRED <= set(row) and row["ms"] > 0 and row["backend"] == "torch"
    dense = next(r for r in result["rows"] if r["op"] == "attend-dense")
    int4 = next(r for r in result["rows"] if r["op"] == "attend-int4-gather-bias")
    assert dense["shape"].split()[2] == int4["shape"].split()[2]  # same number of visible tokens
    assert dense["tflops"] > 0


def test_gpu_rows_code_path_on_a_tiny_interpreted_geometry(monkeypatch):
    """Walk the CUDA bench's code (triton rows, dense baselines, commit ops) through the interpreter."""
    import importlib.util

    import pytest

    from reverie.kernels import backends

    if importlib.util.find_spec("triton") is None or not backends.interpreter_ready():
        pytest.skip("needs triton's interpreter in this process")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(bench, "_peak_mb", lambda *a: None)  # profiling the interpreter's Python is slow
    backends.reset()
    args = argparse.Namespace(quick=True, repeat=1, warmup=0, json=False)
    tiny = {"heads": 2, "head_dim": 16, "tokens": 8, "chunk": 2, "frames": (3,)}
    try:
        rows = bench._gpu_rows(args, device="cpu", geometry=tiny)
    finally:
        backends.reset()
    backends_seen = {(r["op"], r["backend"]) for r in rows}
    assert ("attend-int4-gather-bias", "triton") in backends_seen and ("attend-dense", "torch-sdpa") in backends_seen
    assert ("quantize-int8", "triton") in backends_seen and ("segment-similarity", "torch") in backends_seen
    assert all(r["ms"] > 0 for r in rows)
