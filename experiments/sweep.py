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

Crash safety: every trial records its worker's host, pid and lock file. Before optimizing, and
while waiting for other workers, a worker fails the RUNNING trials whose worker is gone (journal
storage: the worker's lock file is free, or its pid is dead on this host; RDB storage: Optuna's
heartbeat) and enqueues a retry with the same parameters, so a study always ends with exactly
``n_trials`` finished trials. Only ``experiments.tracking`` writes to MLflow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import optuna
import psutil
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm.auto import tqdm

from experiments import metrics as m
from experiments.config import (
    SEED_KEYS,
    ConfigError,
    Experiment,
    RunConfig,
    apply_overrides,
    build_run_config,
    is_experiment_key,
    load_experiment,
)
from experiments.signals import sigterm_as_interrupt
from paradigms.backbone_files import exclusive_lock

if TYPE_CHECKING:  # MLflow loads with the first trial, so a bad sweep file answers before it (~1 s)
    from experiments.tracking import TrackedRun, Tracker

JOURNAL_DIR = "optuna-journal"
#: A RUNNING trial that never recorded its worker is stale after this long (its worker died
#: between creating it and claiming it, a window of milliseconds).
UNCLAIMED_GRACE_SECONDS = 60.0
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


# --------------------------------------------------------------------------- the sweep section


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Strict):
    type: Literal["float"]
    low: float = Field(description="Smallest value.")
    high: float = Field(description="Largest value.")
    log: bool = Field(False, description="Sample on a log scale (needs low > 0).")
    step: float | None = Field(None, gt=0, description="Discretization step (not with log).")


class IntParam(_Strict):
    type: Literal["int"]
    low: int = Field(description="Smallest value.")
    high: int = Field(description="Largest value.")
    log: bool = Field(False, description="Sample on a log scale (needs low > 0 and step 1).")
    step: int = Field(1, ge=1, description="Step between values.")


Scalar = str | int | float | bool | None


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1, description="The values to choose from.")


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class Objective(_Strict):
    metric: str = Field(
        description="An evaluation metric of experiments/metrics.py, e.g. eval/personal_accuracy."
    )
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="Default: the metric's natural direction (metrics.direction)."
    )


class SamplerSpec(_Strict):
    name: Literal["tpe", "random", "grid"] = Field("tpe", description="tpe, random, or grid (ablations).")
    seed: int = Field(
        0, ge=0, description="Mixed with each worker's host and pid (workers never sample alike)."
    )
    n_startup_trials: int = Field(10, ge=0, description="TPE: random trials before the model kicks in.")


class PrunerSpec(_Strict):
    name: Literal["none", "median", "percentile", "hyperband"] = Field("none", description="The pruner.")
    n_startup_trials: int = Field(5, ge=0, description="Trials that finish before anything is pruned.")
    n_warmup_steps: int = Field(0, ge=0, description="Feedback events of a trial before it can be pruned.")
    percentile: float = Field(25.0, gt=0, lt=100, description="percentile: keep trials above it.")
    reduction_factor: int = Field(3, ge=2, description="hyperband: the halving rate.")


class SweepSpec(_Strict):
    """The ``sweep:`` section of an experiment file, validated."""

    space: dict[str, Param] = Field(min_length=1, description="Dotted config key -> its distribution.")
    objectives: list[Objective] = Field(min_length=1, description="One metric, or several (Pareto front).")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec, description="How trials are proposed.")
    n_trials: int | None = Field(
        None, gt=0, description="Trials that must finish (default 20; grid: the grid's size)."
    )
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=1, description="Seeds per trial (default: the file's seeds)."
    )
    pruner: PrunerSpec = Field(default_factory=PrunerSpec, description="Stops poor trials early.")
    study_name: str | None = Field(None, min_length=1, description="Default: the experiment's name.")
    storage: str | None = Field(
        None, min_length=1, description="A journal file path or an RDB URL (postgresql://...)."
    )
    max_failed_trials: int = Field(
        3, ge=1, description="Stop (exit 1) once this many trials failed with an error."
    )
    max_retry: int = Field(3, ge=0, description="Retries of a trial whose worker died.")
    heartbeat_interval: int = Field(60, ge=1, description="RDB storage: seconds between heartbeats.")
    grace_period: int = Field(180, ge=1, description="RDB storage: seconds without a heartbeat = dead.")

    @field_validator("sampler", "pruner", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_list(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        return [{"metric": item} if isinstance(item, str) else item for item in items]


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep ready to run: the experiment, its sweep section and everything resolved."""

    file: Path
    overrides: tuple[str, ...]
    experiment: Experiment
    spec: SweepSpec
    study_name: str
    n_trials: int
    seeds: list[int]
    directions: list[str]
    storage_url: str

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.spec.objectives]

    @property
    def is_journal(self) -> bool:
        return not is_rdb_url(self.storage_url)

    def config(self, params: dict[str, Any], seed: int) -> RunConfig:
        """The run config of one trial and seed: the file's base, ``--set``, the trial's params."""
        experiment = self.experiment
        return build_run_config(
            apply_overrides(experiment.raw, {**experiment.overrides, **params, "seed": seed}),
            where=f" (with sweep params {params})",
        )

    def base_hash(self) -> str:
        """A hash of what every trial shares (the base minus swept keys, and the seeds)."""
        flat = {
            k: v for k, v in self.experiment.base.flat().items() if k != "seed" and k not in self.spec.space
        }
        payload = json.dumps({"base": flat, "seeds": self.seeds}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def is_rdb_url(storage: str) -> bool:
    """``postgresql://...``, ``sqlite:///...``, ``mysql://...``: an SQLAlchemy URL, not a journal path."""
    return "://" in storage


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    # a discriminated union puts the tag in the location: space.<key>.<type>.low -> space.<key>.low
    if len(parts) > 2 and parts[0] == "space" and parts[2] in ("float", "int", "categorical"):
        del parts[2]
    return "sweep." + ".".join(parts)


def _describe_error(error: ValidationError) -> str:
    errors = error.errors()
    # an unknown key explains the "missing" field next to it (a typo): name it first
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    field_name = _field_path(first["loc"])
    kind = first["type"]
    if kind == "extra_forbidden":
        return (
            f"unknown key {field_name!r}: remove it (see README, 'Sweeps', for the keys of a sweep section)"
        )
    if kind == "missing":
        return f"{field_name}: required field is missing; add it to the sweep section"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return f"{field_name}.type: must be one of float, int, categorical"
    given = first.get("input")
    shown = json.dumps(given, default=str) if not isinstance(given, dict) else "a section"
    return f"{field_name}: {first['msg'].lower()} (got {shown}); fix it in the sweep section or with --set"


def _check_param(key: str, param: Any) -> None:
    where = f"sweep.space.{key}"
    if is_experiment_key(key):  # e.g. meta.iterations: read by harness meta-train, never by a trial
        top = key.split(".")[0]
        fix = "list a trial's seeds in sweep.seeds" if top in SEED_KEYS else "sweep a run config field"
        raise ConfigError(
            f"{where}: {top!r} belongs to the experiment file, not to a run's config, so a trial "
            f"could not change it; {fix} (e.g. reward.weights.format)"
        )
    if isinstance(param, FloatParam | IntParam):
        if param.low >= param.high:
            raise ConfigError(
                f"{where}.low: {param.low} must be below high ({param.high}); swap them or widen the range"
            )
        if param.log and param.low <= 0:
            raise ConfigError(f"{where}.low: a log scale needs low > 0 (got {param.low})")
        if isinstance(param, FloatParam) and param.log and param.step is not None:
            raise ConfigError(f"{where}.step: cannot be combined with log: true; drop one of them")
        if isinstance(param, IntParam) and param.log and param.step != 1:
            raise ConfigError(f"{where}.step: a log-scaled int needs step 1 (got {param.step})")


def _sample_values(param: Any) -> list[tuple[str, Any]]:
    if isinstance(param, CategoricalParam):
        return [(f"choices.{i}", choice) for i, choice in enumerate(param.choices)]
    return [("low", param.low), ("high", param.high)]


def _check_key_is_a_field(experiment: Experiment, key: str, param: Any) -> None:
    """Build a RunConfig with each sample value of ``key``: unknown keys and bad values fail here."""
    for where, value in _sample_values(param):
        try:
            settings = {**experiment.overrides, key: value, "seed": experiment.seeds[0]}
            build_run_config(apply_overrides(experiment.raw, settings))
        except ConfigError as error:
            message = str(error)
            if message.startswith("unknown key") or "is a value, not a section" in message:
                raise ConfigError(f"sweep.space.{key}: not a config field ({message})") from None
            raise ConfigError(f"sweep.space.{key}.{where}: {value!r} is not valid here ({message})") from None


def _evaluation_metrics() -> list[str]:
    return [name for name in m.DIRECTIONS if not name.startswith("train/")]


def _resolve_directions(spec: SweepSpec) -> list[str]:
    directions = []
    for index, objective in enumerate(spec.objectives):
        where = f"sweep.objectives.{index}.metric"
        known = ", ".join(_evaluation_metrics())
        try:
            natural = m.direction(objective.metric)
        except KeyError:
            raise ConfigError(f"{where}: unknown metric {objective.metric!r}; known: {known}") from None
        if objective.metric.startswith("train/"):
            raise ConfigError(
                f"{where}: {objective.metric!r} is a training metric; a trial's value is read from its "
                f"final evaluation: use one of {known}"
            )
        default = "maximize" if natural == m.HIGHER else "minimize"
        directions.append(objective.direction or default)
    if len({o.metric for o in spec.objectives}) != len(spec.objectives):
        raise ConfigError("sweep.objectives: a metric is listed twice; list each metric once")
    if len(directions) > 1 and spec.pruner.name != "none":
        raise ConfigError(
            "sweep.pruner: pruning needs a single objective (Optuna cannot prune multi-objective "
            "studies); set pruner: none or keep one objective"
        )
    return directions


def grid_values(key: str, param: Any) -> list[Scalar]:
    """Every value a grid sampler visits for one parameter (categoricals, ints, stepped floats)."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    if isinstance(param, IntParam):
        return list(range(param.low, param.high + 1, param.step))
    if param.step is None:
        raise ConfigError(
            f"sweep.space.{key}.step: the grid sampler needs a step for a float (or use categorical choices)"
        )
    count = math.floor((param.high - param.low) / param.step + 1e-9) + 1
    return [round(param.low + i * param.step, 12) for i in range(count)]


def grid_size(spec: SweepSpec) -> int:
    return math.prod(len(grid_values(key, param)) for key, param in spec.space.items())


def _check_overrides(experiment: Experiment, spec: SweepSpec) -> None:
    for key in experiment.overrides:
        if key in spec.space:
            raise ConfigError(
                f"--set {key}: this key is swept by sweep.space; remove it from --set or from the space"
            )


def parse_sweep(experiment: Experiment) -> SweepSpec:
    """The experiment's ``sweep:`` section validated; a ConfigError names the field on one line."""
    if experiment.sweep is None:
        raise ConfigError(
            f"sweep: experiment {experiment.name!r} has no sweep: section; add one (see README, "
            f"'Sweeps') or run it with harness run"
        )
    try:
        spec = SweepSpec.model_validate(experiment.sweep)
    except ValidationError as error:
        raise ConfigError(_describe_error(error)) from None
    for key, param in spec.space.items():
        _check_param(key, param)
        _check_key_is_a_field(experiment, key, param)
    _check_overrides(experiment, spec)
    return spec


def load_sweep(
    file: str | Path,
    overrides: Sequence[str] = (),
    n_trials: int | None = None,
    storage: str | None = None,
    workers: int = 1,
) -> SweepPlan:
    """Read and validate an experiment file's sweep; nothing is written. Raises ConfigError."""
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1 (got {workers})")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"--n-trials: must be at least 1 (got {n_trials})")
    experiment = load_experiment(file, list(overrides))
    spec = parse_sweep(experiment)
    directions = _resolve_directions(spec)
    if spec.sampler.name == "grid":
        size = grid_size(spec)
        total = n_trials or spec.n_trials or size
        if total > size:
            raise ConfigError(
                f"sweep.n_trials: {total} trials but the grid has {size} points; use n_trials <= {size}"
            )
    else:
        total = n_trials or spec.n_trials or 20
    for seed in spec.seeds or []:  # the file's own seeds were validated with the experiment
        build_run_config(apply_overrides(experiment.raw, {**experiment.overrides, "seed": seed}))
    study_name = spec.study_name or experiment.name
    url = storage or spec.storage or str(Path(JOURNAL_DIR) / f"{experiment.name}.log")
    if workers > 1 and url.startswith("sqlite"):
        raise ConfigError(
            f"--storage {url}: SQLite locks the whole database on every write, so parallel workers "
            f"fail with 'database is locked'; drop --storage to use the default journal file "
            f"({JOURNAL_DIR}/{experiment.name}.log, safe for several processes on one machine) or "
            f"use a PostgreSQL URL (postgresql://...) for workers on several machines"
        )
    return SweepPlan(
        file=Path(file),
        overrides=tuple(overrides),
        experiment=experiment,
        spec=spec,
        study_name=study_name,
        n_trials=total,
        seeds=list(spec.seeds or experiment.seeds),
        directions=directions,
        storage_url=url,
    )


# --------------------------------------------------------------------------- storage and study


def rdb_url(url: str) -> str:
    """``url`` with an installed PostgreSQL driver spelled out when it names none.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3 and 2.0 to psycopg2; either may be the
    one installed (the dev extras install psycopg2-binary), so a plain URL gets the one present.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module, driver in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{driver}://{rest}"
    return url


def _redact(url: str) -> str:
    if not is_rdb_url(url):
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_storage(plan: SweepPlan, on_stale: Callable[[optuna.Study, FrozenTrial], None]) -> BaseStorage:
    """The study's storage: a journal file (one machine) or an RDB with heartbeats (several).

    ``on_stale`` is called with each trial Optuna's heartbeat declared dead (RDB only).
    """
    if plan.is_journal:
        path = Path(plan.storage_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    for attempt in range(3):
        try:
            return RDBStorage(
                rdb_url(plan.storage_url),
                heartbeat_interval=plan.spec.heartbeat_interval,
                grace_period=plan.spec.grace_period,
                heartbeat_stale_trial_callback=on_stale,
            )
        except Exception as error:  # an unreachable server or a bad URL is bad input, not a failed run
            # workers starting at once on a fresh database race to create Optuna's tables: retry
            racing = "already exists" in str(error) or "duplicate key" in str(error)
            if racing and attempt < 2:
                time.sleep(1.0 + attempt)
                continue
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if isinstance(error, ModuleNotFoundError):
                first += "; install the database driver, e.g. pip install psycopg2-binary"
            raise ConfigError(
                f"--storage {_redact(plan.storage_url)}: cannot open the storage ({first})"
            ) from None
    raise AssertionError("unreachable")


def _sampler(plan: SweepPlan) -> optuna.samplers.BaseSampler:
    spec = plan.spec.sampler
    # workers must not sample in lockstep: mix the seed with this worker's host and pid
    mixed = f"{spec.seed}:{socket.gethostname()}:{os.getpid()}".encode()
    seed = int.from_bytes(hashlib.sha256(mixed).digest()[:4], "little")
    if spec.name == "grid":
        # every worker must shuffle the grid alike: Optuna gives trial k the k-th point of the
        # sampler's own order, so orders that differ between workers ran some points twice and
        # others never (seen with --workers 2: 7 trials of a 7-point grid covered 4-6 points)
        space = {key: grid_values(key, param) for key, param in plan.spec.space.items()}
        return optuna.samplers.GridSampler(space, seed=spec.seed)
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.n_startup_trials, constant_liar=True)


def _pruner(plan: SweepPlan) -> optuna.pruners.BasePruner:
    spec = plan.spec.pruner
    if spec.name == "median":
        return optuna.pruners.MedianPruner(spec.n_startup_trials, spec.n_warmup_steps)
    if spec.name == "percentile":
        return optuna.pruners.PercentilePruner(spec.percentile, spec.n_startup_trials, spec.n_warmup_steps)
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=plan.experiment.base.evaluation.every, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.NopPruner()


def open_study(plan: SweepPlan, storage: BaseStorage) -> optuna.Study:
    """Create the study or load it; a resumed study must have the same objectives and base config.

    The study's objectives are named after their metrics (``study.metric_names``).
    """
    study = optuna.create_study(
        storage=storage,
        study_name=plan.study_name,
        sampler=_sampler(plan),
        pruner=_pruner(plan),
        directions=plan.directions,
        load_if_exists=True,
    )
    stored = [d.name.lower() for d in study.directions]
    recorded = study.user_attrs.get("objectives")
    if stored != plan.directions or (recorded is not None and recorded != plan.metrics):
        raise ConfigError(
            f"sweep.objectives: study {plan.study_name!r} in {_redact(plan.storage_url)} optimizes "
            f"{recorded or stored}, not {plan.metrics} {plan.directions}; set sweep.study_name to start "
            f"a new study"
        )
    base_hash = study.user_attrs.get("base_config_hash")
    if base_hash is not None and base_hash != plan.base_hash():
        raise ConfigError(
            f"sweep.study_name: study {plan.study_name!r} was started with another base config or other "
            f"seeds ({base_hash} != {plan.base_hash()}); resume with the same file and --set values, or "
            f"start a new study with --set sweep.study_name=NAME"
        )
    if base_hash is None:
        study.set_user_attr("base_config_hash", plan.base_hash())
        study.set_user_attr("objectives", plan.metrics)
    if study.metric_names != plan.metrics:  # optuna-dashboard and reports show them, not "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(plan.metrics)
    return study


@dataclass(frozen=True)
class Counts:
    """Trials of a study by what they mean for its budget."""

    finished: int  # COMPLETE or PRUNED: they count towards n_trials
    running: int
    waiting: int  # enqueued retries
    errors: int  # FAIL with an error of the run itself (not a dead worker, not surplus)


def study_counts(study: optuna.Study) -> Counts:
    trials = study.get_trials(deepcopy=False)
    return Counts(
        finished=sum(t.state in _FINISHED for t in trials),
        running=sum(t.state == TrialState.RUNNING for t in trials),
        waiting=sum(t.state == TrialState.WAITING for t in trials),
        errors=sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials),
    )


# --------------------------------------------------------------------------- workers and locks


def _lock_dir(plan: SweepPlan) -> Path:
    return Path(plan.storage_url).with_name(Path(plan.storage_url).name + ".workers")


class WorkerLock:
    """A lock file this worker holds while it lives; the kernel frees it when the process dies."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{socket.gethostname()}-{os.getpid()}.lock"
        self._handle = open(self.path, "w")  # noqa: SIM115 (held for the worker's lifetime)
        fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
        self._handle.close()


def lock_is_free(path: str | Path) -> bool:
    """Whether nobody holds ``path``'s lock (its worker is gone); a missing file is free."""
    try:
        handle = open(path)  # noqa: SIM115
    except FileNotFoundError:
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def worker_is_dead(trial: FrozenTrial, now: datetime | None = None) -> bool:
    """Whether a RUNNING trial's worker is gone, as far as this host can tell.

    A worker on another host is never judged (the RDB heartbeat does that). A trial that has not
    recorded its worker yet is given ``UNCLAIMED_GRACE_SECONDS`` to do so.
    """
    attrs = trial.user_attrs
    if "worker_host" not in attrs:
        started = trial.datetime_start or datetime.now(timezone.utc)
        if started.tzinfo is None:
            started = started.astimezone()  # Optuna's naive datetimes are local time
        age = ((now or datetime.now(timezone.utc)) - started).total_seconds()
        return age > UNCLAIMED_GRACE_SECONDS
    if attrs["worker_host"] != socket.gethostname():
        return False
    if attrs.get("worker_lock"):
        return lock_is_free(attrs["worker_lock"])
    return not psutil.pid_exists(int(attrs.get("worker_pid", -1)))


def retry_trial(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> bool:
    """Enqueue a WAITING copy of a failed trial (same params, worker attrs dropped); False past max_retry.

    Mirrors Optuna's RetryHeartbeatStaleTrialCallback (system attrs ``failed_trial``,
    ``retry_history``), but does not copy the dead worker's identity: a retry carrying it would
    look stale the moment it is popped.
    """
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > max_retry:
        return False
    system_attrs = {**trial.system_attrs, "failed_trial": history[0], "retry_history": history}
    user_attrs = {k: v for k, v in trial.user_attrs.items() if not k.startswith("worker_")}
    user_attrs["retry_of"] = history[0]
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


# --------------------------------------------------------------------------- MLflow side


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
    """The study's one MLflow parent run: found again (set back to RUNNING) or created.

    Two workers that create it at once both keep the oldest (by start time, then id) and the
    other deletes its own.
    """

    def parents() -> list:
        runs = tracker.find_runs(plan.experiment.name, "tags.kind = 'sweep'")
        found = [r for r in runs if r.data.tags.get("sweep_study") == plan.study_name]
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    existing = parents()
    if existing:
        return tracker.attach(existing[0].info.run_id).resume()
    mine = tracker.start_run(
        plan.experiment.name,
        f"{plan.study_name}-sweep",
        tags={
            "kind": "sweep",
            "sweep_study": plan.study_name,
            "n_trials": plan.n_trials,
            "objectives": ",".join(plan.metrics),
            "directions": ",".join(plan.directions),
            "sampler": plan.spec.sampler.name,
            "storage": _redact(plan.storage_url),
        },
    )
    oldest = parents()[0]
    if oldest.info.run_id != mine.run_id:
        mine.delete()
        return tracker.attach(oldest.info.run_id).resume()
    mine.log_dict(
        {
            "study_name": plan.study_name,
            "sweep": plan.spec.model_dump(mode="json"),
            "seeds": plan.seeds,
            "overrides": plan.experiment.overrides,
            "base": plan.experiment.base.model_dump(mode="json"),
        },
        "sweep.yaml",
    )
    return mine


# --------------------------------------------------------------------------- one trial


class RunError(RuntimeError):
    """A trial's run raised (diverged, misconfigured...): the trial is FAIL, the sweep goes on."""


class SurplusTrial(RuntimeError):
    """The study already has ``n_trials`` trials finished or under way: this one is not needed."""


class SweepFailed(RuntimeError):
    """Too many trials failed with errors; the sweep stopped."""


def _suggest(trial: optuna.Trial, key: str, param: Any) -> Any:
    if isinstance(param, FloatParam):
        return trial.suggest_float(key, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, IntParam):
        return trial.suggest_int(key, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_categorical(key, param.choices)


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether ``n_trials`` trials numbered below ``number`` are finished, running or queued.

    Every worker sees the same numbering, so of several trials created at once exactly the
    first ones needed go on, whatever the timing.
    """
    ahead = [t for t in study.get_trials(deepcopy=False, states=_LIVE) if t.number < number]
    return len(ahead) >= n_trials


def trial_run_name(config: RunConfig, number: int) -> str:
    """``adapter-grpo-default-t3-s0``: the run name with the trial number before the seed."""
    return f"{config.run_name().removesuffix(f'-s{config.seed}')}-t{number}-s{config.seed}"


@dataclass
class TrialRunner:
    """The objective: one trial = one nested MLflow run per seed; returns the mean objective(s).

    Intermediate values (single objective): each evaluation's objective is reported at step =
    feedback events this trial has consumed over its seeds so far (the step-0 evaluation of a
    later seed, which would repeat the previous seed's last step, is not reported), and the
    pruner may stop the trial there (its runs end KILLED with ``trial_state=PRUNED``).
    """

    plan: SweepPlan
    tracker: Tracker
    parent: TrackedRun
    lock: WorkerLock | None
    bar: Any = None
    current_trial_id: int | None = None
    _runs: list[TrackedRun] = field(default_factory=list)
    _last_events: int = 0  # feedback events at the latest evaluation of the running seed

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        self.current_trial_id = trial._trial_id
        try:
            result = self._trial(trial)
        except Exception:
            self.current_trial_id = None
            raise
        # an interrupt leaves current_trial_id set: Worker._interrupted fails and requeues that trial
        self.current_trial_id = None
        return result

    def _trial(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        self._claim(trial)
        if is_surplus(trial.study, trial.number, self.plan.n_trials):
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise SurplusTrial(f"trial {trial.number}: {self.plan.n_trials} trials already under way")
        params = {key: _suggest(trial, key, param) for key, param in self.plan.spec.space.items()}
        self._runs = []
        try:
            values = self._values(trial, self._run_seeds(trial, params))
        except optuna.TrialPruned:
            self._close("KILLED", "PRUNED")
            raise
        except (KeyboardInterrupt, SystemExit):
            self._close("KILLED", "FAIL", error="interrupted")
            raise
        except Exception as error:
            described = f"{type(error).__name__}: {error}".strip()
            trial.set_user_attr("error", described[:1000])
            self._close("FAILED", "FAIL", error=described)
            raise RunError(f"trial {trial.number} failed: {described}") from error
        self._close("FINISHED", "COMPLETE")
        self.parent.log_metrics(
            {f"sweep/{k}": v for k, v in zip(self.plan.metrics, values, strict=True)}, trial.number
        )
        self.parent.flush()
        return values[0] if len(values) == 1 else tuple(values)

    def _claim(self, trial: optuna.Trial) -> None:
        trial.set_user_attr("worker_host", socket.gethostname())
        trial.set_user_attr("worker_pid", os.getpid())
        if self.lock is not None:
            trial.set_user_attr("worker_lock", str(self.lock.path.resolve()))

    def _run_seeds(self, trial: optuna.Trial, params: dict[str, Any]) -> list[dict[str, float]]:
        from experiments.tracking import child_tags, group_labels

        finals, offset = [], 0
        retry_of = trial.user_attrs.get("retry_of")
        for index, seed in enumerate(self.plan.seeds):
            config = self.plan.config(params, seed)
            _prepare_backbone(config, self.tracker)  # a shared base build is its own run, not this one's time
            group = f"{group_labels([config])[0]}/t{trial.number}"  # adapter/grpo/t3: one per trial
            tags = {**child_tags(config, group), "trial": trial.number, "sweep": self.plan.study_name}
            if retry_of is not None:
                tags["retry_of"] = retry_of
            run = self.tracker.start_run(
                self.plan.experiment.name,
                trial_run_name(config, trial.number),
                tags={**tags, "trial_state": "RUNNING"},
                parent=self.parent,
            )
            self._runs.append(run)
            run.log_params(config.flat())
            run.log_dict(config.model_dump(mode="json"), "config.yaml")
            on_eval = self._on_eval(trial, offset, skip_start=index > 0, seed=seed)
            final = _execute(config, run, self.tracker, on_eval)
            run.flush()
            finals.append(final)
            offset += int(self._last_events)
        return finals

    def _on_eval(
        self, trial: optuna.Trial, offset: int, skip_start: bool, seed: int
    ) -> Callable[[int, dict[str, float]], None]:
        single = len(self.plan.metrics) == 1
        metric = self.plan.metrics[0]

        def on_eval(events: int, values: dict[str, float]) -> None:
            self._last_events = events
            if self.bar is not None:
                self.bar.set_postfix_str(f"trial {trial.number} seed {seed} events {events}", refresh=True)
            if not single or (skip_start and events == 0) or metric not in values:
                return
            trial.report(float(values[metric]), offset + events)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"trial {trial.number} pruned at {events} feedback events (seed {seed})"
                )

        return on_eval

    def _values(self, trial: optuna.Trial, finals: list[dict[str, float]]) -> list[float]:
        """The mean over seeds of each objective's final value; a missing or non-finite one is an error."""
        values = []
        for metric in self.plan.metrics:
            seen = [final.get(metric, float("nan")) for final in finals]
            mean = sum(seen) / len(seen)
            if not math.isfinite(mean):
                raise ValueError(f"objective {metric} is {mean} (per seed: {seen}); it must be finite")
            values.append(mean)
        return values

    def _close(self, status: str, state: str, error: str | None = None) -> None:
        """End every run of the trial with the trial's outcome: all its seeds share one status."""
        for run in self._runs:
            run.set_tags({"trial_state": state})
            run.finish(status, error=error)
        self._runs = []


def _prepare_backbone(config: RunConfig, tracker: Tracker) -> None:
    from experiments.run import prepare_backbones  # the runner imports torch; keep `config show` light

    prepare_backbones([config], tracker, progress=False)


def _execute(config: RunConfig, run: TrackedRun, tracker: Tracker, on_eval: Callable) -> dict[str, float]:
    from experiments.run import execute  # the runner imports torch; keep `config show` light

    return execute(config, run, tracker, progress=False, on_eval=on_eval)


# --------------------------------------------------------------------------- the worker loop


@dataclass
class Worker:
    """One process working on the study until it has ``n_trials`` finished trials."""

    plan: SweepPlan
    tracker: Tracker
    progress: bool = True
    poll_seconds: float = 2.0
    study: optuna.Study = field(init=False)
    parent: TrackedRun = field(init=False)

    def __post_init__(self) -> None:
        self.storage = open_storage(self.plan, self._on_heartbeat_stale)
        self.study = open_study(self.plan, self.storage)
        self.parent = ensure_parent(self.tracker, self.plan)

    def _on_heartbeat_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        retry_trial(study, trial, self.plan.spec.max_retry)
        mark_trial_runs(self.tracker, self.plan, self.parent.run_id, trial.number, "FAILED", "worker died")

    def recover(self) -> list[int]:
        """Fail the RUNNING trials of dead workers, enqueue their retries, fail their MLflow runs."""
        if not self.plan.is_journal:
            optuna.storages.fail_stale_trials(self.study)  # the heartbeat's verdict; callback retries
            return []
        recovered = []
        with exclusive_lock(Path(self.plan.storage_url + ".recover.lock")):
            for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if not worker_is_dead(trial):
                    continue
                try:
                    if not self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                        continue
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                retry_trial(self.study, trial, self.plan.spec.max_retry)
                mark_trial_runs(
                    self.tracker, self.plan, self.parent.run_id, trial.number, "FAILED", "worker died"
                )
                if trial.user_attrs.get("worker_lock"):
                    with contextlib.suppress(OSError):
                        Path(trial.user_attrs["worker_lock"]).unlink()
                recovered.append(trial.number)
        return recovered

    def run(self) -> Counts:
        """Optimize until the study has ``n_trials`` finished trials; Ctrl-C/SIGTERM stop cleanly.

        Raises SweepFailed after ``max_failed_trials`` trials failed with errors, KeyboardInterrupt
        after marking the running trial FAIL (a retry is queued), its runs and the parent KILLED.
        """
        lock = WorkerLock(_lock_dir(self.plan)) if self.plan.is_journal else None
        bar = tqdm(
            total=self.plan.n_trials, desc=self.plan.study_name, unit="trial", disable=not self.progress
        )
        runner = TrialRunner(self.plan, self.tracker, self.parent, lock, bar if self.progress else None)
        try:
            with sigterm_as_interrupt():
                return self._loop(runner, bar)
        except SweepFailed as error:
            if study_counts(self.study).running == 0:
                self.parent.finish("FAILED", error=str(error))
            raise
        except (KeyboardInterrupt, SystemExit):
            self._interrupted(runner)
            raise
        finally:
            bar.close()
            if lock is not None:
                lock.release()

    def _loop(self, runner: TrialRunner, bar: Any) -> Counts:
        while True:
            for number in self.recover():
                _say(f"trial {number}: its worker died; marked FAIL and queued again")
            counts = study_counts(self.study)
            _show(bar, counts)
            if counts.finished >= self.plan.n_trials:
                return counts
            if counts.errors >= self.plan.spec.max_failed_trials:
                raise SweepFailed(
                    f"{counts.errors} trials failed with errors (sweep.max_failed_trials="
                    f"{self.plan.spec.max_failed_trials}); see the error tags of their MLflow runs"
                )
            if counts.finished + counts.running >= self.plan.n_trials and counts.waiting == 0:
                time.sleep(self.poll_seconds)  # the last trials are with other workers
                continue
            self.study.optimize(
                runner,
                catch=(RunError, SurplusTrial),
                callbacks=[self._after_trial(bar)],
                gc_after_trial=True,
            )

    def _after_trial(self, bar: Any) -> Callable[[optuna.Study, FrozenTrial], None]:
        def after(study: optuna.Study, trial: FrozenTrial) -> None:
            counts = study_counts(study)
            _show(bar, counts)
            if "error" in trial.user_attrs and trial.state == TrialState.FAIL:
                _say(f"trial {trial.number} failed: {trial.user_attrs['error']}")
            no_slot = counts.finished + counts.running >= self.plan.n_trials and counts.waiting == 0
            if no_slot or counts.errors >= self.plan.spec.max_failed_trials:
                study.stop()

        return after

    def _interrupted(self, runner: TrialRunner) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the bookkeeping short
        try:
            runner._close("KILLED", "FAIL", error="interrupted")
            if runner.current_trial_id is not None:
                trial = self.storage.get_trial(runner.current_trial_id)
                if trial.state == TrialState.RUNNING:
                    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                        self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                    trial = self.storage.get_trial(runner.current_trial_id)
                if trial.state == TrialState.FAIL and "error" not in trial.user_attrs:
                    retry_trial(self.study, trial, self.plan.spec.max_retry)
            if study_counts(self.study).running == 0:
                self.parent.finish("KILLED", error="interrupted")
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _show(bar: Any, counts: Counts) -> None:
    bar.n = min(counts.finished, bar.total)
    bar.set_postfix(running=counts.running, refresh=False)
    bar.refresh()


# --------------------------------------------------------------------------- results


@dataclass
class SweepResult:
    """What a sweep ends with: the best trial or the Pareto front, as rows and as a table."""

    study_name: str
    finished: bool
    counts: Counts
    rows: list[dict[str, Any]]
    kind: Literal["best_trial", "pareto_front"]

    def table(self) -> str:
        """The rows as an aligned text table (trial number, objective values, params)."""
        if not self.rows:
            return f"study {self.study_name!r}: no completed trial yet"
        columns = ["trial", *[k for k in self.rows[0] if k != "trial"]]
        cells = [[_cell(row.get(c)) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        title = "best trial" if self.kind == "best_trial" else f"Pareto front ({len(self.rows)} trials)"
        lines = [
            f"{title} of study {self.study_name!r}:",
            "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        ]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def result_rows(study: optuna.Study, metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per best trial (single objective) or Pareto-optimal trial: number, values, params."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    best = [study.best_trial] if len(metrics) == 1 else sorted(study.best_trials, key=lambda t: t.number)
    return [
        {
            "trial": t.number,
            **dict(zip(metrics, t.values, strict=True)),
            **{f"param:{k}": v for k, v in t.params.items()},
        }
        for t in best
    ]


def summarize(plan: SweepPlan, study: optuna.Study, parent: TrackedRun | None) -> SweepResult:
    """The sweep's result; when the study is done, logged to the parent run, which is then FINISHED."""
    counts = study_counts(study)
    kind: Literal["best_trial", "pareto_front"] = "best_trial" if len(plan.metrics) == 1 else "pareto_front"
    rows = result_rows(study, plan.metrics)
    done = counts.finished >= plan.n_trials and counts.running == 0
    if done and parent is not None:
        document = [
            {
                "trial": row["trial"],
                "values": {k: row[k] for k in plan.metrics},
                "params": {k.removeprefix("param:"): v for k, v in row.items() if k.startswith("param:")},
            }
            for row in rows
        ]
        parent.log_dict(document[0] if kind == "best_trial" and document else document, f"{kind}.json")
        tags: dict[str, Any] = {"n_finished": counts.finished}
        if rows:
            tags["best_trials"] = ",".join(str(row["trial"]) for row in rows)
        parent.set_tags(tags)
        parent.finish("FINISHED")
    return SweepResult(plan.study_name, done, counts, rows, kind)


# --------------------------------------------------------------------------- entry points


def run_sweep(plan: SweepPlan, tracker: Tracker, workers: int = 1, progress: bool = True) -> SweepResult:
    """Run (or resume) the study with ``workers`` local processes; returns its result.

    Raises ConfigError (bad storage, a resumed study that does not match), SweepFailed (too many
    failed trials, or a worker failed), KeyboardInterrupt (after marking what was running).
    """
    if workers == 1:
        worker = Worker(plan, tracker, progress)
        worker.run()
        return summarize(plan, worker.study, worker.parent)
    coordinator = Worker(plan, tracker, progress)  # creates the study and the parent before anyone races
    coordinator.recover()
    statuses = _run_processes(plan, tracker, workers, coordinator, progress)
    result = summarize(plan, coordinator.study, coordinator.parent)
    if any(status != 0 for status in statuses) and not result.finished:
        raise SweepFailed(f"worker exit statuses {statuses}; see their output above")
    return result


def worker_command(plan: SweepPlan, tracker: Tracker) -> list[str]:
    """The command line of one local worker: this sweep, one process, no output but errors."""
    command = [sys.executable, "-m", "experiments.cli", "sweep", str(plan.file), "--workers", "1"]
    command += ["--storage", plan.storage_url, "--n-trials", str(plan.n_trials), "--quiet"]
    command += ["--tracking-uri", tracker.uri]
    for override in plan.overrides:
        command += ["--set", override]
    return command


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_environment(workers: int) -> dict[str, str]:
    """The environment of local workers: the CPU's cores split between them.

    Each torch process otherwise starts one compute thread per core; N workers then run N times
    as many threads as cores, and spinning OpenMP threads slowed trials ~20x on 2 cores (see
    benchmarks/sweep_workers.py). A thread count the user exported is kept.
    """
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = dict(os.environ)
    for variable in _THREAD_VARIABLES:
        env.setdefault(variable, threads)
    return env


def _run_processes(
    plan: SweepPlan, tracker: Tracker, workers: int, coordinator: Worker, progress: bool
) -> list[int]:
    env = worker_environment(workers)
    processes = [subprocess.Popen(worker_command(plan, tracker), env=env) for _ in range(workers)]
    bar = tqdm(
        total=plan.n_trials, desc=f"{plan.study_name} ({workers} workers)", unit="trial", disable=not progress
    )
    try:
        with sigterm_as_interrupt():
            while any(p.poll() is None for p in processes):
                _show(bar, study_counts(coordinator.study))
                time.sleep(coordinator.poll_seconds)
            _show(bar, study_counts(coordinator.study))
            return [p.returncode for p in processes]
    except KeyboardInterrupt:
        _stop_processes(processes)
        if study_counts(coordinator.study).running == 0:
            coordinator.parent.finish("KILLED", error="interrupted")
        raise
    finally:
        bar.close()


def _stop_processes(processes: list[subprocess.Popen], patience: float = 5.0) -> None:
    """Let the workers finish their own Ctrl-C handling; interrupt the ones that did not hear it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.2)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def load_study_if_any(experiment: str, journal_dir: str | Path = JOURNAL_DIR) -> optuna.Study | None:
    """The study of ``experiment``'s sweep from its default journal file, or None when there is none.

    Read only: for reports (``harness report``), which draw a sweep's Pareto front and parameter
    importances. A study stored elsewhere (another journal path, an RDB) is not looked for.
    """
    path = Path(journal_dir) / f"{experiment}.log"
    if not path.is_file():
        return None
    storage = JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.load_study(study_name=experiment, storage=storage)
    except KeyError:  # the journal holds studies under other names only
        return None
