"""A search space: the ``space:`` of a ``sweep:`` or ``tuning:`` section, as Optuna distributions.

The one place both sections share: the schema of one parameter (``{type: float | int | categorical,
...}``), the one-line description of a schema error, and :func:`distributions`, which checks every
parameter (naming the field to fix) and returns ``optuna.distributions`` objects, the form the
workers hand to ``study.ask`` and the grid sampler reads. Nothing here opens a study or imports MLflow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from experiments.config import SEED_KEYS, ConfigError, is_experiment_key

Scalar = str | int | float | bool | None


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


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1, description="The values to choose from.")


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
_TYPES = ("float", "int", "categorical")


def field_path(section: str, loc: Sequence[Any]) -> str:
    """``section.<loc>`` of a pydantic error, without the union's tag: ``space.<key>.float.low`` is
    shown as ``<section>.space.<key>.low``."""
    parts = [str(p) for p in loc]
    if len(parts) > 2 and parts[0] == "space" and parts[2] in _TYPES:
        del parts[2]
    return f"{section}." + ".".join(parts)


def describe(error: ValidationError, section: str, keys_hint: str) -> str:
    """One line for a section's schema error: the field, what is wrong, and the fix.

    An unknown key is named first (it explains a "missing" field beside it: a typo); ``keys_hint``
    says where the section's keys are listed.
    """
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    name, kind = field_path(section, first["loc"]), first["type"]
    if kind == "extra_forbidden":
        return f"unknown key {name!r}: remove it ({keys_hint})"
    if kind == "missing":
        return f"{name}: required field is missing; add it to the {section} section"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"{name}.type: must be one of {', '.join(_TYPES)}"
    given = first.get("input")
    shown = json.dumps(given, default=str) if not isinstance(given, dict) else "a section"
    return f"{name}: {first['msg'].lower()} (got {shown}); fix it in the {section} section or with --set"


def _check_key(where: str, key: str) -> None:
    if is_experiment_key(key):  # e.g. meta.iterations: read by harness meta-train, never by a trial
        top = key.split(".")[0]
        fix = "list a trial's seeds in sweep.seeds" if top in SEED_KEYS else "sweep a run config field"
        raise ConfigError(
            f"{where}: {top!r} belongs to the experiment file, not to a run's config, so a trial "
            f"could not change it; {fix} (e.g. reward.weights.format)"
        )


def distribution(section: str, key: str, param: FloatParam | IntParam | CategoricalParam) -> BaseDistribution:
    """The Optuna distribution of one search key; ConfigError (one line naming the field) when the
    key is not a run's or the range is not one Optuna can sample."""
    where = f"{section}.space.{key}"
    _check_key(where, key)
    if isinstance(param, CategoricalParam):
        return CategoricalDistribution(param.choices)
    # Optuna refuses these too, with a ValueError that names no field; say which field to fix
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
    kind = FloatDistribution if isinstance(param, FloatParam) else IntDistribution
    try:
        return kind(param.low, param.high, log=param.log, step=param.step)
    except ValueError as error:  # anything the checks above do not name
        raise ConfigError(f"{where}: {error}") from None


def distributions(section: str, space: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """Every search key's distribution, in the section's order (see :func:`distribution`)."""
    return {key: distribution(section, key, param) for key, param in space.items()}


def grid_values(where: str, dist: BaseDistribution) -> list[Scalar]:
    """Every value a grid sampler visits for one distribution (categoricals, ints, stepped floats)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        return list(range(dist.low, dist.high + 1, dist.step))
    assert isinstance(dist, FloatDistribution)
    if dist.step is None:
        raise ConfigError(
            f"{where}.step: the grid sampler needs a step for a float (or use categorical choices)"
        )
    count = math.floor((dist.high - dist.low) / dist.step + 1e-9) + 1
    return [round(dist.low + i * dist.step, 12) for i in range(count)]


def grid_size(section: str, space: Mapping[str, BaseDistribution]) -> int:
    """How many points a grid over ``space`` has."""
    return math.prod(len(grid_values(f"{section}.space.{key}", d)) for key, d in space.items())


def first_value(dist: BaseDistribution) -> Any:
    """A value of the distribution to build a config with: its first choice, or its low end."""
    return dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low


def bounds(dist: BaseDistribution) -> tuple[float, float] | None:
    """The smallest and largest number a distribution allows; None for fewer than two numeric choices."""
    if not isinstance(dist, CategoricalDistribution):
        return (dist.low, dist.high)
    numbers = [c for c in dist.choices if isinstance(c, int | float) and not isinstance(c, bool)]
    return (min(numbers), max(numbers)) if len(numbers) > 1 else None


def sample_values(param: FloatParam | IntParam | CategoricalParam) -> list[tuple[str, Any]]:
    """(field, value) pairs that span a parameter: each choice, or its low and high ends."""
    if isinstance(param, CategoricalParam):
        return [(f"choices.{i}", choice) for i, choice in enumerate(param.choices)]
    return [("low", param.low), ("high", param.high)]
