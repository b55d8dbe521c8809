"""A sweep resolved and checked before anything is written: ``load_sweep`` reads the experiment
file, validates its ``sweep:`` section against the run configs it produces, and returns the
``SweepPlan`` every worker runs. Every problem is a one-line ``ConfigError`` (exit 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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
from experiments.sweep.spec import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SweepSpec,
    grid_size,
)

JOURNAL_DIR = "optuna-journal"


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


def check_parallel_storage(url: str, workers: int, default_journal: str) -> None:
    """Refuse SQLite for several workers (ConfigError): it locks the whole database on every write."""
    if workers > 1 and url.startswith("sqlite"):
        raise ConfigError(
            f"--storage {url}: SQLite locks the whole database on every write, so parallel workers "
            f"fail with 'database is locked'; drop --storage to use the default journal file "
            f"({default_journal}, safe for several processes on one machine) or "
            f"use a PostgreSQL URL (postgresql://...) for workers on several machines"
        )


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
    check_parallel_storage(url, workers, f"{JOURNAL_DIR}/{experiment.name}.log")
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
