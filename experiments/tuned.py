"""Tuned-values files: the hyperparameters ``harness tune`` chose per arm, and the check that they fit.

An experiment reads one with its top-level ``tuned:`` key (a path, where ``{backbone}`` stands for
the run's backbone as a file name: ``experiments/tuned/{backbone}.yaml``). Each run of the
experiment whose paradigm learns with an algorithm takes its arm's values (``algorithm.learning_rate``
...) under its grid point and ``--set`` values, which still win, and records where they came from
in its ``tuned_from`` field (logged as a param; the report prints it beside the row). A file is
refused for a run of another backbone (or another build recipe of the builtin base) or another
task suite, for a learning arm it has no values for, and for seeds it was tuned on.

The file (written by :mod:`experiments.tuning`, committed with the study that produced it)::

    backbone: builtin
    base_digest: fcd69e37ec14          # the builtin base's recipe digest (absent for other backbones)
    suite: default
    criterion: eval/personal_accuracy_auc
    budget: {feedback_events: 600, evaluation_every: 100}
    tuning_users: [900000000, 900000001]
    trials_per_arm: 7
    arms:
      full_ft-ppo:
        values: {algorithm.learning_rate: 0.0001}
        criterion: 0.61                 # mean over the tuning users at the chosen values
        at_edge: false                  # chosen at the edge of the searched range?
        trials: [{params: {...}, criterion: ..., personal_accuracy: ..., forgetting: ...}, ...]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BACKBONE_PLACEHOLDER = "{backbone}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrialResult(_Strict):
    """One point of an arm's search: its values and what the tuning users' runs ended with (means)."""

    params: dict[str, Any] = Field(description="The values this trial ran with (dotted config keys).")
    criterion: float | None = Field(description="The criterion's mean over the tuning users (None: failed).")
    personal_accuracy: float | None = Field(None, description="Final eval/personal_accuracy, mean.")
    forgetting: float | None = Field(None, description="Final eval/forgetting, mean.")
    error: str | None = Field(None, description="Why the trial failed (a diverged run...), if it did.")


class ArmResult(_Strict):
    values: dict[str, Any] = Field(description="The chosen values (dotted config keys).")
    criterion: float = Field(description="The criterion at the chosen values.")
    at_edge: bool = Field(
        False, description="Whether a chosen value is at the edge of its searched range (widen it)."
    )
    trials: list[TrialResult] = Field(default_factory=list, description="Every completed trial.")


class TunedValues(_Strict):
    """A tuned-values file, validated."""

    backbone: str = Field(description="The backbone the values were tuned on (the config's backbone).")
    base_digest: str | None = Field(None, description="The builtin base's recipe digest, if builtin.")
    suite: str = Field(description="The task suite the values were tuned on.")
    criterion: str = Field(description="The metric maximized (its final value, mean over tuning users).")
    budget: dict[str, int] = Field(description="feedback_events and evaluation_every of the tuning runs.")
    tuning_users: list[int] = Field(min_length=1, description="The tuning users' seeds.")
    trials_per_arm: int = Field(ge=1, description="Trials (values tried) per arm.")
    source: dict[str, str] = Field(default_factory=dict, description="Where the study's runs are.")
    arms: dict[str, ArmResult] = Field(description="Arm name -> its result.")

    def label(self, path: str | Path) -> str:
        """``experiments/tuned/builtin.yaml (7 trials x 2 users x 600 events)``: the runs' ``tuned_from``."""
        return (
            f"{Path(path).as_posix()} ({self.trials_per_arm} trials x {len(self.tuning_users)} users x "
            f"{self.budget.get('feedback_events', '?')} events)"
        )


def backbone_slug(backbone: str) -> str:
    """A backbone as a file name: ``builtin:tiny`` -> ``builtin-tiny``, ``org/model`` -> ``org-model``."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", backbone).strip("-.") or "backbone"


def resolve_path(template: str | Path, backbone: str) -> Path:
    """``template`` with ``{backbone}`` replaced by :func:`backbone_slug` of ``backbone``."""
    return Path(str(template).replace(BACKBONE_PLACEHOLDER, backbone_slug(backbone)))


def arm_name(config) -> str:
    """The arm a run config belongs to: its run name without suite and seed (``full_ft-ppo``,
    ``full_ft-grpo-replay0.25+ewc``, ``adapter-grpo``)."""
    return config.run_name().removesuffix(f"-{config.task.suite}-s{config.seed}")


def base_digest(backbone: str) -> str | None:
    """The recipe digest of a builtin backbone (its cache key), None for any other backbone."""
    from experiments.base import RECIPES  # light: recipes only, no torch

    recipe = RECIPES.get(backbone)
    return recipe.digest() if recipe is not None else None


def read(path: Path) -> TunedValues:
    """Read and validate a tuned-values file; ValueError (one line naming the problem) when it is not one."""
    if not path.is_file():
        raise ValueError(f"{path}: no such tuned-values file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return TunedValues.model_validate(data)
    except yaml.YAMLError:
        raise ValueError(f"{path}: not valid YAML") from None
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path}: {field}: {first['msg'].lower()}; rewrite it with harness tune") from None


def write(path: Path, tuned: TunedValues, header: str) -> Path:
    """Write ``tuned`` to ``path`` (through a temporary file, so a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(tuned.model_dump(mode="json", exclude_none=True), sort_keys=False, width=110)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(comment + body, encoding="utf-8")
    scratch.rename(path)
    return path


def mismatch(tuned: TunedValues, config) -> str | None:
    """Why ``tuned`` does not fit the run ``config`` (backbone, base recipe, suite, seed), or None."""
    if tuned.backbone != config.backbone:
        return f"it was tuned for backbone {tuned.backbone!r}, not {config.backbone!r}"
    digest = base_digest(config.backbone)
    if digest is not None and tuned.base_digest != digest:
        return (
            f"it was tuned on another build of {config.backbone!r} (recipe {tuned.base_digest}, now {digest})"
        )
    if tuned.suite != config.task.suite:
        return f"it was tuned on suite {tuned.suite!r}, not {config.task.suite!r}"
    if config.seed in tuned.tuning_users:
        return f"seed {config.seed} is one of its tuning users"
    return None
