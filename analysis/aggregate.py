"""Per-group IQM with a stratified-bootstrap CI, from one value per run (statistics from analysis.stats).

Scores are arranged as stats.py expects, ``(runs, tasks)``: one column per task suite (the strata),
runs in the canonical order of :func:`analysis.runs.sort_runs` within each column. When the
suites of a group have unequal numbers of runs the columns cannot form a matrix, and the group's
runs are pooled into one column ``(runs, 1)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.runs import GROUP_COLUMNS, group_members, ordered_groups, sort_runs
from analysis.stats import DEFAULT_BOOTSTRAP_REPS, interquartile_mean, stratified_bootstrap_ci

SUMMARY_FIELDS = ("iqm", "ci_low", "ci_high", "n")


def scores_matrix(runs: pd.DataFrame, column: str = "value") -> np.ndarray:
    """``(runs, tasks)`` scores of one group: one column per task suite, or ``(runs, 1)`` if unbalanced.

    ``runs`` holds the group's runs (columns ``task``, ``seed``, ``run_name``, ``run_id`` and the
    group columns) with finite values in ``column``.
    """
    ordered = sort_runs(runs)
    per_task = [g[column].to_numpy(dtype="float64") for _, g in ordered.groupby("task", sort=True)]
    if len({len(values) for values in per_task}) == 1:
        return np.column_stack(per_task)  # (runs, tasks)
    return ordered[column].to_numpy(dtype="float64")[:, None]  # (runs, 1)


def summarize(scores: np.ndarray, seed: int, reps: int = DEFAULT_BOOTSTRAP_REPS) -> dict[str, float | int]:
    """``{"iqm", "ci_low", "ci_high", "n"}`` of ``scores: (runs, tasks)``; NaNs and n = 0 when empty."""
    if scores.size == 0:
        return {"iqm": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    point, lower, upper = stratified_bootstrap_ci(scores, interquartile_mean, seed=seed, reps=reps)
    return {"iqm": point, "ci_low": lower, "ci_high": upper, "n": int(scores.size)}


def group_summaries(
    runs: pd.DataFrame, values: dict[str, pd.Series], seed: int, reps: int = DEFAULT_BOOTSTRAP_REPS
) -> pd.DataFrame:
    """One row per group of ``runs`` and, per ``values`` key, its IQM, CI bounds and n.

    Args:
        runs: the runs to compare (:func:`analysis.runs.run_table` rows, usually finished ones).
        values: ``{key: per-run series indexed by run id}``; non-finite and missing values are left out.
        seed: bootstrap seed; every cell is bootstrapped with it, so a cell does not depend on the
            others or on their order.
        reps: bootstrap replicates.

    Returns:
        Columns ``paradigm, algorithm, variant, group, runs`` then ``<key>.iqm``, ``<key>.ci_low``,
        ``<key>.ci_high``, ``<key>.n`` per key, groups in the canonical order.
    """
    rows = []
    for key in ordered_groups(runs):
        members = group_members(runs, key)
        row: dict[str, object] = dict(zip(GROUP_COLUMNS, key, strict=True))
        row["group"] = members["group"].iloc[0]
        row["runs"] = len(members)
        for name, series in values.items():
            valued = members.assign(value=members["run_id"].map(series).astype("float64"))
            valued = valued[np.isfinite(valued["value"])]
            summary = summarize(scores_matrix(valued) if len(valued) else np.empty((0, 1)), seed, reps)
            row.update({f"{name}.{field}": summary[field] for field in SUMMARY_FIELDS})
        rows.append(row)
    columns = [*GROUP_COLUMNS, "group", "runs"] + [f"{k}.{f}" for k in values for f in SUMMARY_FIELDS]
    return pd.DataFrame(rows, columns=columns)
