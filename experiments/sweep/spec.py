"""The ``sweep:`` section's schema: the search space (its parameters are :mod:`.space`'s), the
objectives, the sampler and the pruner. Pure pydantic: nothing here opens a study or imports MLflow."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from experiments.sweep.space import Param


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
