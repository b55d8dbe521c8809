"""A grid as an Optuna study whose trials are known in advance: one trial per (grid point, seed).

``harness run FILE --workers N`` or ``--storage URL`` runs an experiment's runs through this study
instead of one after another in one process, so a grid gets what a sweep has: several local
workers, crash safety (a dead worker's run is failed and queued again) and workers on several
machines sharing one RDB storage (PostgreSQL) and one MLflow server.

The study: named ``<experiment>-grid-<hash of the runs' configs>`` (the same file and ``--set``
values resume it; another config is another study), stored in ``optuna-journal/<experiment>-grid.log``
by default. Trial parameter ``run`` is the run's index in ``Experiment.runs()`` (grid-major, then
seeds); its value is the run's final ``eval/personal_accuracy`` (never optimized: nothing is sampled).

Ask-and-tell over a fixed list: a worker enqueues every run that has no trial finished, running or
queued (a new study: all of them; a resumed one: the runs that failed or never started), then pops
queued trials one at a time (``pop_queued``); when none is queued, nothing is created. Two workers
that queued the same run at once (several machines starting together) both pop it at most once:
the later trial is dropped as a ``duplicate_of`` the earlier (``owner``), so every run finishes once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from experiments import metrics as m
from experiments.config import ConfigError, Experiment, RunConfig, load_experiment
from experiments.sweep.plan import JOURNAL_DIR, check_parallel_storage, is_rdb_url
from experiments.sweep.recovery import retry_attrs
from experiments.sweep.study import LIVE_STATES

#: The trial parameter naming a run: its index in ``Experiment.runs()``.
RUN_PARAM = "run"
#: A trial's value: the run's final value of this metric (shown by optuna-dashboard; never optimized).
VALUE_METRIC = m.PERSONAL_ACCURACY
#: The final metrics a trial keeps (user attr ``final``): the ones ``harness run`` prints per run.
SHOWN_METRICS = (m.PERSONAL_ACCURACY, m.GENERAL_ACCURACY, m.SEARCH_CALLS_PER_QUERY)
#: RDB storage: seconds between a worker's heartbeats, and silence after which its run is retried.
HEARTBEAT_INTERVAL = 60
GRACE_PERIOD = 180
#: Retries of a run whose worker died (a run that raises is not retried until the command is rerun).
MAX_RETRY = 3


@dataclass(frozen=True)
class GridPlan:
    """An experiment's runs as a study: the configs, and where the study lives."""

    file: Path
    overrides: tuple[str, ...]
    experiment: Experiment
    configs: list[RunConfig]
    study_name: str
    storage_url: str
    heartbeat_interval: int = HEARTBEAT_INTERVAL
    grace_period: int = GRACE_PERIOD
    max_retry: int = MAX_RETRY

    @property
    def is_journal(self) -> bool:
        return not is_rdb_url(self.storage_url)

    @property
    def n_runs(self) -> int:
        return len(self.configs)

    def distribution(self) -> IntDistribution:
        return IntDistribution(0, self.n_runs - 1)


def runs_hash(configs: Sequence[RunConfig]) -> str:
    """A short hash of the runs, in order: the same file and ``--set`` values give the same study."""
    payload = json.dumps([config.config_hash() for config in configs])
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def default_storage(experiment: Experiment) -> str:
    return str(Path(JOURNAL_DIR) / f"{experiment.name}-grid.log")


def load_grid(
    file: str | Path, overrides: Sequence[str] = (), workers: int = 1, storage: str | None = None
) -> GridPlan:
    """Read and validate an experiment file's runs as a grid study; nothing is written. Raises ConfigError."""
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1 (got {workers})")
    experiment = load_experiment(file, list(overrides))
    url = storage or default_storage(experiment)
    check_parallel_storage(url, workers, default_storage(experiment))
    configs = experiment.runs()
    return GridPlan(
        file=Path(file),
        overrides=tuple(overrides),
        experiment=experiment,
        configs=configs,
        study_name=f"{experiment.name}-grid-{runs_hash(configs)}",
        storage_url=url,
    )


def open_grid_study(plan: GridPlan, storage: BaseStorage) -> optuna.Study:
    """Create the grid's study or load it (by name, so only a study of the same runs is resumed)."""
    study = optuna.create_study(
        storage=storage,
        study_name=plan.study_name,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),  # never asked: every trial is enqueued
        load_if_exists=True,
    )
    if "run_names" not in study.user_attrs:
        study.set_user_attr("kind", "grid")
        study.set_user_attr("experiment", plan.experiment.name)
        study.set_user_attr("run_names", [config.run_name() for config in plan.configs])
    return study


def run_index(trial: FrozenTrial) -> int | None:
    """The run a trial stands for: its ``run`` param, or the value it was enqueued with."""
    if RUN_PARAM in trial.params:
        return int(trial.params[RUN_PARAM])
    fixed = trial.system_attrs.get("fixed_params") or {}
    return int(fixed[RUN_PARAM]) if RUN_PARAM in fixed else None


def enqueue_missing(study: optuna.Study, plan: GridPlan) -> list[int]:
    """Queue every run without a trial that is finished, running or queued; returns their indices.

    A resumed study gets its failed and never-started runs back; one that is complete gets nothing.
    A run queued again after a failed attempt is that attempt's retry (``retry_of`` and the system
    attrs ``recovery.retry_trial`` writes): also when the worker that failed a dead worker's trial
    died itself before queueing the retry, so a rerun keeps the lineage. The retry carries nothing
    else of the attempt (not its error, nor its MLflow run).
    """
    trials = study.get_trials(deepcopy=False)
    live = {run_index(t) for t in trials if t.state in LIVE_STATES}
    attempts = {  # the latest failed attempt of each run; a duplicate stepped aside and is none
        run_index(t): t for t in trials if t.state == TrialState.FAIL and "duplicate_of" not in t.user_attrs
    }
    missing = [index for index in range(plan.n_runs) if index not in live]
    for index in missing:
        user_attrs = {"run_name": plan.configs[index].run_name()}
        if index not in attempts:
            study.enqueue_trial({RUN_PARAM: index}, user_attrs=user_attrs)
            continue
        lineage, system_attrs = retry_attrs(attempts[index])
        study.add_trial(
            optuna.create_trial(
                state=TrialState.WAITING,
                params={RUN_PARAM: index},
                distributions={RUN_PARAM: plan.distribution()},
                user_attrs={**user_attrs, "retry_of": lineage["retry_of"]},
                system_attrs=system_attrs,
            )
        )
    return missing


def pop_queued(study: optuna.Study, storage: BaseStorage) -> int | None:
    """Claim the oldest queued trial (WAITING -> RUNNING) for this worker; its trial id, or None.

    The state change is the storage's compare-and-set (what ``Study.ask`` does with its queue), so
    of several workers exactly one gets each trial; unlike ``ask``, nothing is created when the
    queue is empty.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                return trial._trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def owner(study: optuna.Study, index: int, number: int) -> int | None:
    """The trial that owns run ``index`` when it is not trial ``number``, else None.

    A run is owned by its complete trial, else by its lowest-numbered running or queued trial:
    every worker decides alike, so of two trials of one run exactly one goes on.
    """
    same = [t for t in study.get_trials(deepcopy=False) if run_index(t) == index and t.number != number]
    complete = [t.number for t in same if t.state == TrialState.COMPLETE]
    if complete:
        return complete[0]
    earlier = [
        t.number for t in same if t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number < number
    ]
    return min(earlier) if earlier else None


@dataclass(frozen=True)
class GridCounts:
    """A grid study's runs by state (a run counts once, whatever its retries)."""

    n_runs: int
    finished: int  # runs with a complete trial
    running: int  # trials running now
    waiting: int  # trials queued
    failed: int  # runs whose last trial raised, and nothing is running or queued for them

    @property
    def done(self) -> bool:
        return self.running == 0 and self.waiting == 0


def grid_counts(study: optuna.Study, n_runs: int) -> GridCounts:
    trials = study.get_trials(deepcopy=False)
    finished = {run_index(t) for t in trials if t.state == TrialState.COMPLETE}
    pending = {run_index(t) for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)}
    errored = {run_index(t) for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs}
    return GridCounts(
        n_runs=n_runs,
        finished=len(finished),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
        failed=len(errored - finished - pending),
    )


@dataclass
class GridRow:
    """One run of the grid as the study knows it."""

    index: int
    name: str
    status: str  # FINISHED, FAILED, or PENDING (running or queued elsewhere)
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class GridResult:
    study_name: str
    counts: GridCounts
    rows: list[GridRow]

    @property
    def failed(self) -> list[GridRow]:
        return [row for row in self.rows if row.status == "FAILED"]


def grid_rows(study: optuna.Study, plan: GridPlan) -> list[GridRow]:
    latest: dict[int, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):  # by number: a run's complete trial, else its last
        index = run_index(trial)
        if index is None or "duplicate_of" in trial.user_attrs:
            continue
        if index not in latest or latest[index].state != TrialState.COMPLETE:
            latest[index] = trial
    rows = []
    for index, config in enumerate(plan.configs):
        trial = latest.get(index)
        if trial is not None and trial.state == TrialState.COMPLETE:
            rows.append(
                GridRow(index, config.run_name(), "FINISHED", dict(trial.user_attrs.get("final", {})))
            )
        elif trial is not None and trial.state == TrialState.FAIL and "error" in trial.user_attrs:
            rows.append(GridRow(index, config.run_name(), "FAILED", error=trial.user_attrs["error"]))
        else:
            rows.append(GridRow(index, config.run_name(), "PENDING"))
    return rows
