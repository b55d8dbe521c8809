"""Sweeps: an experiment file's ``sweep:`` section run as an Optuna study, logged to MLflow.

A sweep section::

    sweep:
      space:                                  # dotted config keys
        reward.weights.search_cost: {type: float, low: 0.0, high: 1.0}
        algorithm.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
        paradigm.rank: {type: int, low: 2, high: 32, step: 2}
        algorithm.name: {type: categorical, choices: [grpo, reinforce, ppo]}
      objectives:                             # one: a best trial; several: a Pareto front
        - {metric: eval/personal_accuracy}    # direction defaults to the metric's own
        - {metric: eval/search_calls_per_query, direction: minimize}
      sampler: tpe                            # tpe | random | grid (or {name: tpe, seed: 0})
      n_trials: 40                            # trials that finish (complete or pruned)
      seeds: [0, 1]                           # one nested run per seed; the value is the mean
      pruner: {name: median, n_warmup_steps: 100}   # single objective only
      study_name: my-study                    # default: the experiment's name
      storage: optuna-journal/my-study.log    # default: optuna-journal/<experiment name>.log

Layout: one Optuna study per sweep (created, or resumed by the same command); one MLflow parent
run per study (tags ``kind=sweep``, ``sweep_study``), found again on resume; one nested MLflow
run per trial and seed, named ``adapter-grpo-default-t3-s0``, carrying the contract tags plus
``trial``, ``sweep`` and ``trial_state``. A trial's MLflow runs end with its outcome: FINISHED
(COMPLETE), KILLED (PRUNED, interrupted) or FAILED (an error, a dead worker).

Optuna's own machinery: the space is ``optuna.distributions`` objects (``space``); a worker asks the
study for a trial (``study.ask(distributions)``: a queued retry first, else a new sample), runs it
and tells the outcome (``study.tell``), until the study has ``n_trials`` finished trials.

Crash safety: every trial records its worker's host, pid and lock file. Before each trial, and
while waiting for other workers, a worker fails the RUNNING trials whose worker is gone and
enqueues a retry with the same parameters, so a study always ends with exactly ``n_trials``
finished trials. RDB storage: Optuna's heartbeat and ``RetryHeartbeatStaleTrialCallback``; journal
storage (no heartbeat in Optuna): the worker's lock file is free, or its pid is dead on this host
(``recovery``). Only ``experiments.tracking`` writes to MLflow.

Grids: ``harness run FILE --workers N`` (or ``--storage URL``) runs an experiment's (grid point,
seed) runs as a study whose trials are known in advance, with the same storage, crash safety and
multi-machine path: ``grid`` (the plan and the study's queue) and ``grid_workers`` (the worker loop
and ``run_grid``).

Modules, one job each: ``space`` (a search space as Optuna distributions, shared with
``harness tune``), ``spec`` (the section's schema), ``plan`` (reading and checking it:
``load_sweep``), ``study`` (Optuna storage, sampler, pruner, study), ``recovery`` (dead workers' trials),
``bookkeeping`` (the MLflow parent run and a dead trial's runs), ``objective``
(one trial), ``results`` (best trial or Pareto front), ``workers`` (the worker loop and
``run_sweep``), ``grid`` and ``grid_workers``, and ``processes`` (local worker processes, for both).
"""

from experiments.sweep.bookkeeping import ensure_parent, mark_trial_runs
from experiments.sweep.objective import SweepFailed, TrialRunner, is_surplus, trial_run_name
from experiments.sweep.plan import JOURNAL_DIR, SweepPlan, is_rdb_url, load_sweep, parse_sweep
from experiments.sweep.processes import work_alongside, worker_environment
from experiments.sweep.recovery import (
    UNCLAIMED_GRACE_SECONDS,
    WorkerLock,
    lock_is_free,
    retry_trial,
    worker_is_dead,
)
from experiments.sweep.results import SweepResult, result_rows, summarize
from experiments.sweep.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    Scalar,
    distributions,
    grid_size,
    grid_values,
)
from experiments.sweep.spec import Objective, PrunerSpec, SamplerSpec, SweepSpec
from experiments.sweep.study import (
    Counts,
    _sampler,
    load_study_if_any,
    open_storage,
    open_study,
    rdb_url,
    storage_at,
    study_counts,
)
from experiments.sweep.workers import Worker, run_sweep, worker_command

__all__ = [
    "JOURNAL_DIR",
    "UNCLAIMED_GRACE_SECONDS",
    "CategoricalParam",
    "Counts",
    "FloatParam",
    "IntParam",
    "Objective",
    "Param",
    "PrunerSpec",
    "SamplerSpec",
    "Scalar",
    "SweepFailed",
    "SweepPlan",
    "SweepResult",
    "SweepSpec",
    "TrialRunner",
    "Worker",
    "WorkerLock",
    "_sampler",
    "distributions",
    "ensure_parent",
    "grid_size",
    "grid_values",
    "is_rdb_url",
    "is_surplus",
    "load_study_if_any",
    "load_sweep",
    "lock_is_free",
    "mark_trial_runs",
    "open_storage",
    "open_study",
    "parse_sweep",
    "rdb_url",
    "result_rows",
    "retry_trial",
    "run_sweep",
    "storage_at",
    "study_counts",
    "summarize",
    "trial_run_name",
    "work_alongside",
    "worker_command",
    "worker_environment",
    "worker_is_dead",
]
