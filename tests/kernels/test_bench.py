import argparse
import json

from engine.bench import kernels as bench

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
