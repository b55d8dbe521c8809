"""A sweep resolved and checked before anything is written: ``load_sweep`` reads the experiment
file, validates its ``sweep:`` section against the run configs it produces, and returns the
``SweepPlan`` every worker runs. Every problem is a one-line ``ConfigError`` (exit 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from experiments import metrics as m
from experiments.config import (
    ConfigError,
    Experiment,
    RunConfig,
    apply_overrides,
    build_run_config,
    load_experiment,
)
from experiments.sweep.space import describe, distributions, grid_size, sample_values
from experiments.sweep.spec import SweepSpec

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

JOURNAL_DIR = "optuna-journal"


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep ready to run: the experiment, its sweep section and everything resolved."""

    file: Path
    overrides: tuple[str, ...]
    experiment: Experiment
    spec: SweepSpec
    #: The search space as Optuna distributions (``study.ask`` reads them), in the section's order.
    distributions: dict[str, BaseDistribution]
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


def _check_key_is_a_field(experiment: Experiment, key: str, param: Any) -> None:
    """Build a RunConfig with each sample value of ``key``: unknown keys and bad values fail here."""
    for where, value in sample_values(param):
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


def parse_sweep(experiment: Experiment) -> tuple[SweepSpec, dict[str, BaseDistribution]]:
    """The experiment's ``sweep:`` section validated, and its space as Optuna distributions; a
    ConfigError names the field on one line."""
    if experiment.sweep is None:
        raise ConfigError(
            f"sweep: experiment {experiment.name!r} has no sweep: section; add one (see README, "
            f"'Sweeps') or run it with harness run"
        )
    try:
        spec = SweepSpec.model_validate(experiment.sweep)
    except ValidationError as error:
        raise ConfigError(
            describe(error, "sweep", "see README, 'Sweeps', for the keys of a sweep section")
        ) from None
    space = distributions("sweep", spec.space)
    for key, param in spec.space.items():
        _check_key_is_a_field(experiment, key, param)
    _check_overrides(experiment, spec)
    return spec, space


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
    spec, space = parse_sweep(experiment)
    directions = _resolve_directions(spec)
    if spec.sampler.name == "grid":
        size = grid_size("sweep", space)
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
        distributions=space,
        study_name=study_name,
        n_trials=total,
        seeds=list(spec.seeds or experiment.seeds),
        directions=directions,
        storage_url=url,
    )
