"""The phase-accuracy matrix R of drift runs, and GEM's ACC, BWT and FWT from it.

A drift run logs ``eval/phase_accuracy/<j>`` (accuracy on the items set in phase j) at every
evaluation. The evaluation after ``s`` feedback events belongs to the phase of the last event it
consumed, ``tasks.suites.phase_at(s - 1, budget, T)`` (the same schedule the stream follows), so
``R[i, j]`` is phase j's accuracy at the last evaluation trained through phase i, and the
evaluation at step 0 (the untrained policy) gives FWT's baseline ``b[j]``. ``T`` is the suite's
number of phases (or one more than the highest phase logged, for an unknown suite); ``budget`` is
the run's ``param.budget.feedback_events`` (or its last step).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.names import PARAM_PREFIX, PHASE_ACCURACY_PREFIX
from analysis.stats import ContinualLearningMetrics, continual_learning_metrics

BUDGET_PARAM = f"{PARAM_PREFIX}budget.feedback_events"


class PhaseMatrix(NamedTuple):
    """One run's ``accuracy: (T, T)`` matrix R (NaN where no evaluation) and ``untrained: (T,)`` b."""

    accuracy: np.ndarray
    untrained: np.ndarray


def has_phases(table: pd.DataFrame) -> bool:
    """Whether any run logged a phase-accuracy metric."""
    return bool(table["metric"].str.startswith(PHASE_ACCURACY_PREFIX, na=False).any())


def phase_matrices(table: pd.DataFrame, runs: pd.DataFrame) -> dict[str, PhaseMatrix]:
    """``{run_id: PhaseMatrix}`` for the ``runs`` that logged phase accuracies."""
    from tasks.suites import SUITES, phase_at  # the stream's own schedule; pure Python, no torch

    rows = table[table["metric"].str.startswith(PHASE_ACCURACY_PREFIX, na=False)].dropna(subset=["value"])
    rows = rows.assign(phase=rows["metric"].str.slice(len(PHASE_ACCURACY_PREFIX)).astype("int64"))
    by_id = runs.drop_duplicates("run_id").set_index("run_id")
    matrices = {}
    for run_id, points in rows[rows["run_id"].isin(by_id.index)].groupby("run_id", sort=True):
        run = by_id.loc[run_id]
        suite_phases = SUITES[run["task"]].n_phases if run["task"] in SUITES.names() else 0
        phases = max(int(points["phase"].max()) + 1, suite_phases)
        budget = _budget(run, int(points["step"].max()))
        accuracy = np.full((phases, phases), np.nan)  # (T, T)
        untrained = np.full(phases, np.nan)  # (T,)
        for step, at_step in points.sort_values("step").groupby("step", sort=True):
            row = untrained if step == 0 else accuracy[phase_at(int(step) - 1, budget, phases)]
            row[at_step["phase"].to_numpy()] = at_step["value"].to_numpy()
        matrices[run_id] = PhaseMatrix(accuracy, untrained)
    return matrices


def run_metrics(matrices: dict[str, PhaseMatrix]) -> tuple[pd.DataFrame, list[str]]:
    """ACC, BWT and FWT per run, and a note for each run whose matrix lacks the entries they need.

    Returns:
        A frame indexed by run id with columns ``acc``, ``bwt``, ``fwt`` (FWT is NaN when the
        untrained evaluation is missing; BWT and FWT are NaN with one phase), and the notes.
    """
    rows, notes = {}, []
    for run_id, matrix in sorted(matrices.items()):
        untrained = matrix.untrained if np.all(np.isfinite(matrix.untrained[1:])) else None
        try:
            rows[run_id] = continual_learning_metrics(matrix.accuracy, untrained)
        except ValueError as error:
            notes.append(f"run {run_id}: no continual-learning metrics ({error})")
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(ContinualLearningMetrics._fields))
    return frame.astype("float64"), notes


def mean_matrix(matrices: list[PhaseMatrix]) -> np.ndarray:
    """R averaged over runs (seeds), ignoring missing entries: ``(T, T)``; needs runs of one T."""
    stacked = np.stack([m.accuracy for m in matrices])  # (runs, T, T)
    counts = np.isfinite(stacked).sum(axis=0)  # (T, T)
    sums = np.nansum(stacked, axis=0)  # (T, T)
    return np.divide(sums, counts, out=np.full(counts.shape, np.nan), where=counts > 0)


def _budget(run: pd.Series, last_step: int) -> int:
    value = pd.to_numeric(pd.Series([run.get(BUDGET_PARAM)]), errors="coerce").iloc[0]
    return int(value) if np.isfinite(value) and value > 0 else max(1, last_step)
