"""The MLflow side of a sweep or a grid, through ``experiments.tracking``: the study's one parent
run, and closing a dead or failed trial's runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from experiments.sweep.plan import SweepPlan
from experiments.sweep.study import redact

if TYPE_CHECKING:  # MLflow loads with the first trial, so a bad sweep file answers before it (~1 s)
    from experiments.sweep.grid import GridPlan
    from experiments.tracking import TrackedRun, Tracker


def _trial_runs(tracker: Tracker, plan: SweepPlan, parent_id: str, number: int) -> list:
    return tracker.find_runs(
        plan.experiment.name, f"tags.mlflow.parentRunId = '{parent_id}' and tags.trial = '{number}'"
    )


def mark_trial_runs(
    tracker: Tracker, plan: SweepPlan, parent_id: str, number: int, status: str, error: str
) -> int:
    """Close a trial's still-RUNNING MLflow runs with ``status`` and ``error``; returns how many."""
    closed = 0
    for run in _trial_runs(tracker, plan, parent_id, number):
        if run.info.status != "RUNNING":
            continue
        handle = tracker.attach(run.info.run_id)
        handle.set_tags({"trial_state": "FAIL"})
        handle.finish(status, error=error)
        closed += 1
    return closed


def ensure_parent(tracker: Tracker, plan: SweepPlan) -> TrackedRun:
    """The study's one MLflow parent run (``kind=sweep``): found again (set back to RUNNING) or created."""
    return find_or_start_parent(
        tracker,
        plan.experiment.name,
        f"{plan.study_name}-sweep",
        {
            "kind": "sweep",
            "sweep_study": plan.study_name,
            "n_trials": plan.n_trials,
            "objectives": ",".join(plan.metrics),
            "directions": ",".join(plan.directions),
            "sampler": plan.spec.sampler.name,
            "storage": redact(plan.storage_url),
        },
        "sweep_study",
        (
            {
                "study_name": plan.study_name,
                "sweep": plan.spec.model_dump(mode="json"),
                "seeds": plan.seeds,
                "overrides": plan.experiment.overrides,
                "base": plan.experiment.base.model_dump(mode="json"),
            },
            "sweep.yaml",
        ),
    )


def ensure_grid_parent(tracker: Tracker, plan: GridPlan) -> TrackedRun:
    """The grid study's one MLflow parent run (``kind=experiment``, ``grid_study``): found or created."""
    experiment = plan.experiment
    return find_or_start_parent(
        tracker,
        experiment.name,
        f"{experiment.name}-{plan.n_runs}-runs",
        {
            "kind": "experiment",
            "n_runs": plan.n_runs,
            "grid_study": plan.study_name,
            "storage": redact(plan.storage_url),
        },
        "grid_study",
        (experiment.record(), "experiment.yaml"),
    )


def find_or_start_parent(
    tracker: Tracker,
    experiment: str,
    name: str,
    tags: dict[str, Any],
    key: str,
    document: tuple[Any, str],
) -> TrackedRun:
    """A study's one MLflow parent run, the run of ``experiment`` whose tag ``key`` is ``tags[key]``
    (and whose ``kind`` is ``tags["kind"]``): found again (set back to RUNNING) or created with
    ``tags`` and the artifact ``document`` (data, file name).

    Two workers that create it at once both keep the oldest (by start time, then id) and the
    other deletes its own.
    """

    def parents() -> list:
        runs = tracker.find_runs(experiment, f"tags.kind = '{tags['kind']}'")
        found = [r for r in runs if r.data.tags.get(key) == str(tags[key])]
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    existing = parents()
    if existing:
        return tracker.attach(existing[0].info.run_id).resume()
    mine = tracker.start_run(experiment, name, tags=tags)
    oldest = parents()[0]
    if oldest.info.run_id != mine.run_id:
        mine.delete()
        return tracker.attach(oldest.info.run_id).resume()
    mine.log_dict(*document)
    return mine
