"""Compare every memory policy on the same seeded rollout, then write a table and a plot.

    python examples/compare_policies.py                    # the default model, horizon 256
    python examples/compare_policies.py --out results/ -- --horizon 64 --policies full,window,dual

Everything after `--` goes to `reverie bench memory` (see `reverie bench memory --help`). Writes
`memory_bench.json` (the bench's JSON line), `memory_bench.md` (a Markdown table, one row per policy and
budget) and `memory_psnr.png` (PSNR vs budget per policy: vs the full cache, vs the real game, and on
revisits) into `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

COLUMNS = ("policy", "budget_frac", "attn_rel_err", "retained_mass", "psnr_vs_full", "psnr_vs_game",
           "revisit_psnr", "kv_bytes", "ms_per_frame", "ms_per_frame_at_horizon")


def run_bench(bench_args: list[str]) -> dict:
    """Run `reverie bench memory --json` in-process and return its JSON object."""
    from reverie.engine.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["bench", "memory", "--json", *bench_args])
    if code:
        raise SystemExit(f"bench memory failed with exit code {code}")
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def markdown_table(result: dict) -> str:
    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = [f"Model `{result['model']}`, horizon {result['horizon']} frames, device {result['device']}.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in result["rows"]:
        lines.append("| " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in ("psnr_vs_full", "psnr_vs_game", "revisit_psnr")
               if any(r[m] is not None for r in result["rows"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    policies = sorted({r["policy"] for r in result["rows"]})
    for ax, metric in zip(axes[0], metrics):
        for policy in policies:
            pts = sorted((r["budget_frac"], r[metric]) for r in result["rows"]
                         if r["policy"] == policy and r[metric] is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=policy)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (fraction of the full cache)")
        ax.set_ylabel(f"{metric} (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"memory policies, model {result['model']}, horizon {result['horizon']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".", help="output folder (default: current folder)")
    parser.add_argument("bench_args", nargs="*", help="arguments for `reverie bench memory` (after --)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run_bench(args.bench_args)
    (out / "memory_bench.json").write_text(json.dumps(result, indent=1))
    table = markdown_table(result)
    (out / "memory_bench.md").write_text(table)
    plot(result, out / "memory_psnr.png")
    print(table)
    print(f"wrote {out / 'memory_bench.json'}, {out / 'memory_bench.md'}, {out / 'memory_psnr.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
