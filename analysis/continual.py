"""The phase-accuracy matrix R of drift runs, and GEM's ACC, BWT and FWT from it.

At every evaluation a drift run logs ``eval/phase_accuracy/<j>`` (accuracy on the items whose
value was set in phase j, answered in phase j's world: the user's profile and search tool as
they were then) and, from the first batch on, ``eval/stream_phase``: the phase the stream was in
when the batch consumed last before the evaluation was drawn. The runner evaluates after the
last batch of every phase, so ``R[i, j]`` is phase j's accuracy at the last evaluation whose
stream phase is i (the policy trained through phase i), for every paradigm and algorithm
whatever its batch size; the evaluation at step 0 (the untrained policy) gives FWT's baseline
``b[j]``. ``T`` is the suite's number of phases (or one more than the highest phase logged, for
a suite the report is not told about).

What the report knows of the task suites (their numbers of phases, and when a stream enters each)
is passed in as a :class:`DriftSchedule` by the caller (``harness report`` passes the harness's own
suites): ``analysis`` imports no task code, so a report is built from logged runs alone.

:func:`phase_matrix` is the one rule, a pure function of one run's logged evaluations; the
rest applies it to the runs of a tidy table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.names import PARAM_PREFIX, PHASE_ACCURACY_PREFIX, STREAM_PHASE
from analysis.stats import ContinualLearningMetrics, continual_learning_metrics

BUDGET_PARAM = f"{PARAM_PREFIX}budget.feedback_events"


@dataclass(frozen=True)
class DriftSchedule:
    """The task suites' drift phases, as a report needs them (passed in; see the module docstring).

    ``phases`` maps a suite's name (a run's ``task`` tag) to its number of drift phases;
    ``phase_at(events, budget, n_phases)`` is the phase in force after ``events`` feedback events of a
    ``budget``-event run (the stream's schedule, ``tasks.suites.phase_at``).
    """

    phases: Mapping[str, int]
    phase_at: Callable[[int, int, int], int]

    def n_phases(self, suite: str) -> int:
        """The suite's number of phases; 0 for a suite not in the schedule."""
        return self.phases.get(suite, 0)


class PhaseMatrix(NamedTuple):
    """One run's ``accuracy: (T, T)`` matrix R (NaN where no evaluation) and ``untrained: (T,)`` b."""

    accuracy: np.ndarray
    untrained: np.ndarray


def has_phases(table: pd.DataFrame, prefix: str = PHASE_ACCURACY_PREFIX) -> bool:
    """Whether any run logged a phase-accuracy metric (``<prefix><j>``)."""
    return bool(table["metric"].str.startswith(prefix, na=False).any())


def phase_matrix(
    evaluations: pd.DataFrame, n_phases: int, prefix: str = PHASE_ACCURACY_PREFIX
) -> PhaseMatrix:
    """R and b of one run from its logged evaluations.

    Args:
        evaluations: one run's rows with columns ``metric``, ``step``, ``value``; rows other than
            ``<prefix><j>`` and ``eval/stream_phase`` are ignored.
        n_phases: T, at least one more than the highest phase in the rows.
        prefix: the per-phase accuracy metric's prefix (``eval/phase_accuracy/``).

    Returns:
        ``R[i, j]`` = ``<prefix><j>`` at the last step whose ``eval/stream_phase`` is i, and
        ``b[j]`` = ``<prefix><j>`` at step 0; NaN where no such evaluation was logged. An
        evaluation without a stream phase other than step 0's fills no row.
    """
    rows = evaluations.dropna(subset=["value"])
    accuracy_rows = rows[rows["metric"].str.startswith(prefix, na=False)]
    phase_of_step = (
        rows[rows["metric"] == STREAM_PHASE]
        .astype({"step": "int64"})
        .set_index("step")["value"]
        .astype("int64")
    )
    accuracy = np.full((n_phases, n_phases), np.nan)  # (T, T)
    untrained = np.full(n_phases, np.nan)  # (T,)
    for step, at_step in (
        accuracy_rows.astype({"step": "int64"}).sort_values("step").groupby("step", sort=True)
    ):
        if step == 0:
            row = untrained
        elif step in phase_of_step.index:
            row = accuracy[int(phase_of_step[step])]
        else:
            continue
        columns = at_step["metric"].str.slice(len(prefix)).astype("int64").to_numpy()
        row[columns] = at_step["value"].to_numpy()  # a later step overwrites: the last one wins
    return PhaseMatrix(accuracy, untrained)


def phase_matrices(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    prefix: str = PHASE_ACCURACY_PREFIX,
    drift: DriftSchedule | None = None,
) -> tuple[dict[str, PhaseMatrix], list[str]]:
    """``{run_id: PhaseMatrix}`` for the ``runs`` that logged phase accuracies, and notes.

    A run that logged phase accuracies but no ``eval/stream_phase`` (logged before the runner
    recorded it) gets no matrix and a note: its rows cannot be placed. ``T`` is the run's suite's
    number of phases in ``drift``, or one more than the highest phase it logged when larger (or
    without ``drift``).
    """

    wanted = table["metric"].str.startswith(prefix, na=False) | (table["metric"] == STREAM_PHASE)
    rows = table[wanted & table["run_id"].isin(runs["run_id"])]
    by_id = runs.drop_duplicates("run_id").set_index("run_id")
    matrices, notes = {}, []
    for run_id, evaluations in rows.groupby("run_id", sort=True):
        accuracies = evaluations[evaluations["metric"].str.startswith(prefix, na=False)]
        if accuracies.empty:
            continue
        if not (evaluations["metric"] == STREAM_PHASE).any():
            notes.append(
                f"run {by_id.loc[run_id, 'run_name']} ({run_id}): no continual-learning metrics (it logged "
                f"no `{STREAM_PHASE}`, so its evaluations cannot be placed in phases; rerun it)"
            )
            continue
        task = by_id.loc[run_id, "task"]
        highest = int(accuracies["metric"].str.slice(len(prefix)).astype("int64").max())
        phases = max(highest + 1, drift.n_phases(task) if drift is not None else 0)
        matrices[run_id] = phase_matrix(evaluations, phases, prefix)
    return matrices, notes


def phase_changes(runs: pd.DataFrame, drift: DriftSchedule | None) -> list[tuple[int, int]]:
    """``(feedback events, phase)`` at which the streams of ``runs`` enter each later drift phase.

    From each run's suite and ``param.budget.feedback_events`` through the stream's own schedule
    (``drift.phase_at``): the first event count served from phase i, for i >= 1. Runs of
    single-phase suites or suites ``drift`` does not name, or without a budget, add nothing (all
    runs without ``drift``). Sorted, without repeats.
    """
    if drift is None:
        return []
    budgets = pd.to_numeric(
        runs.get(BUDGET_PARAM, pd.Series(index=runs.index, dtype="float64")), errors="coerce"
    )
    changes = set()
    for task, budget in zip(runs["task"], budgets, strict=True):
        phases = drift.n_phases(task)
        if phases < 2 or not np.isfinite(budget) or budget <= 0:
            continue
        for phase in range(1, phases):
            first = -(-phase * int(budget) // phases)  # ceil(phase * budget / T)
            while first > 0 and drift.phase_at(first - 1, int(budget), phases) >= phase:
                first -= 1
            changes.add((first, phase))
    return sorted(changes)


def run_metrics(
    matrices: dict[str, PhaseMatrix], names: dict[str, str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """ACC, BWT and FWT per run, and a note for each run whose matrix lacks the entries they need.

    ``names`` maps run ids to run names for the notes.

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
            name = (names or {}).get(run_id)
            notes.append(
                f"run {f'{name} ({run_id})' if name else run_id}: no continual-learning metrics ({error})"
            )
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(ContinualLearningMetrics._fields))
    return frame.astype("float64"), notes


def mean_matrix(matrices: list[PhaseMatrix]) -> np.ndarray:
    """R averaged over runs (seeds), ignoring missing entries: ``(T, T)``; needs runs of one T."""
    stacked = np.stack([m.accuracy for m in matrices])  # (runs, T, T)
    counts = np.isfinite(stacked).sum(axis=0)  # (T, T)
    sums = np.nansum(stacked, axis=0)  # (T, T)
    return np.divide(sums, counts, out=np.full(counts.shape, np.nan), where=counts > 0)
