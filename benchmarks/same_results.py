"""Whether a re-run logs a committed comparison's metrics: the check behind "this change moved no result".

Both sides are tidy run tables (``analysis.load``): ``--runs`` an exported ``runs.parquet`` of the re-run
(or ``--tracking-uri`` with ``--experiment`` to read its store), ``--against`` the committed one. Rows are
joined on run name, metric and step, over the re-run's runs only (a committed comparison of several users
against a re-run of one). Time, memory and retrieval-latency metrics are left out
(``experiments.metrics.measures_the_machine``). Reports the values compared and identical, overall and
for ``eval/`` metrics, and every differing value with its relative difference, largest first, grouped by
metric.

    python benchmarks/same_results.py --runs results/comparison-smollm2-user0-shared-prefix/runs.parquet \\
        --against results/comparison-smollm2/runs.parquet \\
        --out benchmarks/results/same_results_smollm2_user0_shared_prefix.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from analysis.load import load_parquet, load_runs
from experiments import metrics


def compare(rerun: pd.DataFrame, committed: pd.DataFrame) -> dict:
    """The comparison of ``rerun``'s values against ``committed``'s (both tidy run tables)."""
    committed = committed[committed["run_name"].isin(set(rerun["run_name"]))]
    keys = ["run_name", "metric", "step"]
    joined = committed[[*keys, "value"]].merge(
        rerun[[*keys, "value"]], on=keys, suffixes=("_committed", "_rerun"), how="outer", indicator=True
    )
    joined = joined[joined["metric"].notna()]
    joined = joined[~joined["metric"].map(metrics.measures_the_machine)]
    both = joined[joined["_merge"] == "both"]
    same = both["value_committed"] == both["value_rerun"]
    differing = both[~same].assign(
        relative=lambda d: (
            (d["value_rerun"] - d["value_committed"]).abs() / d["value_committed"].abs().clip(lower=1e-12)
        )
    )
    evaluation = both["metric"].str.startswith("eval/")
    return {
        "runs": sorted(set(rerun["run_name"])),
        "values_compared": len(both),
        "identical": int(same.sum()),
        "eval_values_compared": int(evaluation.sum()),
        "eval_identical": int((same & evaluation).sum()),
        "only_committed": int((joined["_merge"] == "left_only").sum()),
        "only_rerun": int((joined["_merge"] == "right_only").sum()),
        "differing_by_metric": {
            metric: {"values": len(group), "largest_relative": float(group["relative"].max())}
            for metric, group in differing.groupby("metric")
        },
    }


def add_runs_arguments(parser: argparse.ArgumentParser, whose: str = "a") -> None:
    """``--runs`` (a ``runs.parquet``), or ``--tracking-uri`` with ``--experiment`` (a store): where the
    runs are read from (:func:`read_runs`); ``whose`` names them in the help ("the re-run's")."""
    parser.add_argument("--runs", type=Path, help=f"{whose} runs.parquet")
    parser.add_argument("--tracking-uri", help=f"or {whose} MLflow store ...")
    parser.add_argument("--experiment", help="... and its experiment name")


def read_runs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    """The tidy run table :func:`add_runs_arguments` points to, and where it came from."""
    if args.runs:
        return load_parquet(args.runs), str(args.runs)
    if args.tracking_uri and args.experiment:
        return load_runs([args.experiment], args.tracking_uri), args.tracking_uri
    parser.error("give --runs, or --tracking-uri with --experiment")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_runs_arguments(parser, "the re-run's")
    parser.add_argument("--against", type=Path, required=True, help="the committed runs.parquet")
    parser.add_argument("--out", type=Path, help="write the comparison here (JSON)")
    args = parser.parse_args()
    rerun, source = read_runs(parser, args)
    result = {"rerun": source, "against": str(args.against)}
    result |= compare(rerun, load_parquet(args.against))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
