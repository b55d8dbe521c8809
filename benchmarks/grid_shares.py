"""How much of each run of a grid went to evaluations: the evaluation share as the runs logged it.

Reads a tidy run table (``analysis.load``): ``--runs`` an exported ``runs.parquet``, or ``--tracking-uri``
with ``--experiment`` to read a store. Per run, at its last evaluation: ``cost/wall_seconds`` (the run so
far: its whole wall time but saving its state), ``cost/evaluation_wait_seconds`` (what training stood
still for: every evaluation in place, or starting the copies and waiting for them and for the last
evaluation when they evaluate beside training) and their ratio, the share; with the run's thread count
and whether it evaluated beside training (``evaluation.background`` and a core to spare: one thread on
this 2-core machine).

    harness run experiments/comparison.yaml --set 'seeds=[0]' --set threads=1 --tracking-uri sqlite:////tmp/grid.db
    python benchmarks/grid_shares.py --tracking-uri sqlite:////tmp/grid.db --experiment comparison \\
        --out benchmarks/results/grid_shares_comparison_s0.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from same_results import add_runs_arguments, read_runs

from experiments import metrics as m


def shares(runs: pd.DataFrame) -> list[dict]:
    """One row per run of ``runs`` (a tidy run table): its last evaluation's wall and wait seconds, share."""
    rows = []
    for name, run in runs.groupby("run_name", sort=True):
        final = run[run["step"] == run["step"].max()]
        values = dict(zip(final["metric"], final["value"], strict=True))
        wall, waited = values[m.WALL_SECONDS], values[m.EVALUATION_WAIT_SECONDS]
        rows.append(
            {
                "run": name,
                "threads": int(run["param.threads"].iloc[0]),
                "evaluation_background": run["param.evaluation.background"].iloc[0] == "true",
                "wall_seconds": wall,
                "evaluation_wait_seconds": waited,
                "evaluation_share": waited / wall,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_runs_arguments(parser)
    parser.add_argument("--out", type=Path, help="write the rows here (JSON)")
    args = parser.parse_args()
    runs, source = read_runs(parser, args)
    result = {"benchmark": "grid_shares", "runs_from": source, "rows": shares(runs)}
    text = json.dumps(result, indent=2)
    for row in result["rows"]:
        print(
            f"{row['run']:30s} threads {row['threads']} wall {row['wall_seconds']:6.2f}s "
            f"waited {row['evaluation_wait_seconds']:6.2f}s share {row['evaluation_share']:.3f}"
        )
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
