"""``harness tune FILE``: each learning arm of an experiment gets its own hyperparameters, on tuning users.

A comparison is only fair when every arm runs at a step size that suits it (LoRA's best learning
rate is ~10x full fine-tuning's). The file's ``tuning:`` section says what to search::

    tuning:
      space:                                   # searched for every arm that learns (algorithm != none)
        algorithm.learning_rate: {type: categorical, choices: [1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3]}
        # continual.strength: {...}            # keys under continual.* only for arms with a mechanism
      users: 2                                 # tuning users (seeds from tasks.users.TUNING_USER_SEED_START)
      criterion: eval/personal_accuracy_auc    # maximized: its final value, mean over the tuning users
      sampler: grid                            # grid (every value) | tpe | random
      # n_trials: 7                            # default: the grid's size (tpe/random: 20)
      out: experiments/tuned/{backbone}.yaml   # the tuned-values file the experiment's tuned: key reads

Every arm of the file's grid whose paradigm learns with an algorithm (``full_ft-ppo``,
``adapter-grpo``...) is one Optuna study, run by the harness's own sweep machinery
(:mod:`experiments.sweep`: the same journal storage, resume, crash recovery, ``--workers``) on the
file's base config and that grid point, with ``task.users=tuning`` and the tuning users as seeds:
the run config refuses evaluation seeds there, and evaluation runs refuse tuning seeds, so a tuning
user is never evaluated. The runs go to the MLflow experiment ``<name>-tuning``, the studies to
``optuna-journal/<name>-tuning.log`` (``<name>-tuning-<arm>``). The command is resumable: run it
again and finished studies are only read back. At the end it writes the tuned-values file
(:mod:`experiments.tuned`): per arm the chosen values, the criterion at each value tried, and the
final personal accuracy and forgetting there, plus the backbone, base recipe and suite it is valid
for.

The criterion: the mean personal accuracy over the run (area under the personal-accuracy curve,
normalized), averaged over the tuning users. It is the quantity the comparison is about (how well
and how soon an arm learns its user), it averages every evaluation of a run rather than resting on
the last one (less noise from a few tuning users), and it penalizes a step size that learns and
then collapses. Forgetting is not part of it: it is the comparison's other outcome, reported at
each value tried, so that the trade-off a lower step size would buy is visible rather than fixed
by a bound chosen in advance. Ties go to the smaller value (the more conservative step).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from experiments import metrics as m
from experiments import tuned as tuned_values
from experiments.config import ConfigError, Experiment, RunConfig, load_experiment
from experiments.sweep import SweepPlan, load_sweep, run_sweep
from experiments.sweep.space import Param, bounds, describe, distributions, first_value
from tasks.users import tuning_user_seeds

if TYPE_CHECKING:  # MLflow loads when tuning starts, so a bad file answers before it (~1 s)
    from optuna.distributions import BaseDistribution

    from experiments.tracking import Tracker

SUFFIX = "-tuning"


class TuningSpec(BaseModel):
    """The ``tuning:`` section of an experiment file, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    space: dict[str, Param] = Field(min_length=1, description="Dotted config key -> its distribution.")
    users: int = Field(2, ge=1, le=1000, description="Tuning users (seeds from TUNING_USER_SEED_START).")
    criterion: str = Field(m.PERSONAL_ACCURACY_AUC, description="The metric maximized (final, mean).")
    sampler: Literal["grid", "tpe", "random"] = Field("grid", description="How values are proposed.")
    n_trials: int | None = Field(None, gt=0, description="Trials per arm (default: the grid's size, or 20).")
    out: str = Field("experiments/tuned/{backbone}.yaml", description="The tuned-values file to write.")

    @field_validator("criterion")
    @classmethod
    def _maximizable(cls, metric: str) -> str:
        if not metric.startswith("eval/") or metric not in m.DIRECTIONS or m.direction(metric) != m.HIGHER:
            wanted = [k for k, v in m.DIRECTIONS.items() if k.startswith("eval/") and v == m.HIGHER]
            raise ValueError(f"must be an evaluation metric where higher is better: {', '.join(wanted)}")
        return metric


@dataclass(frozen=True)
class ArmStudy:
    """One arm's search: its name, its grid point, and the sweep that runs it."""

    arm: str
    config: RunConfig  # the arm's config with the file's values (first tuning user)
    plan: SweepPlan


@dataclass(frozen=True)
class TuningPlan:
    file: Path
    overrides: tuple[str, ...]
    experiment: Experiment
    spec: TuningSpec
    users: list[int]
    arms: list[ArmStudy]
    out: Path

    @property
    def experiment_name(self) -> str:
        return self.experiment.name + SUFFIX


def parse_tuning(experiment: Experiment) -> TuningSpec:
    """The experiment's ``tuning:`` section; a ConfigError names the field on one line."""
    if experiment.tuning is None:
        raise ConfigError(
            f"tuning: experiment {experiment.name!r} has no tuning: section; add one (see "
            f"experiments/tuning.py or experiments/comparison.yaml)"
        )
    try:
        spec = TuningSpec.model_validate(experiment.tuning)
    except ValidationError as error:
        raise ConfigError(describe(error, "tuning", f"keys: {', '.join(TuningSpec.model_fields)}")) from None
    distributions("tuning", spec.space)  # the sweep's checks, named after the tuning section
    return spec


def _applies(key: str, config: RunConfig) -> bool:
    """Whether ``key`` is tuned for this arm: continual.* keys only where a mechanism is active."""
    return not key.startswith("continual.") or config.continual.active


def _inline(value: Any) -> str:
    """``value`` as one line of YAML, as ``--set`` reads it back (JSON's ``3e-05`` is a string to
    PyYAML; YAML's own ``3.0e-05`` is a float)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).removesuffix("\n...\n").strip()


def _as_set(key: str, value: Any) -> str:
    return f"{key}={_inline(value)}"


def _sweep_section(spec: TuningSpec, space: dict[str, Any], study: str) -> dict[str, Any]:
    section: dict[str, Any] = {
        "space": {k: v.model_dump(mode="json", exclude_none=True) for k, v in space.items()},
        "objectives": [{"metric": spec.criterion, "direction": "maximize"}],
        "sampler": {"name": spec.sampler, "seed": 0},
        "study_name": study,
    }
    if spec.n_trials is not None:
        section["n_trials"] = spec.n_trials
    # a diverging value is an answer (too large), not a reason to stop tuning the others
    section["max_failed_trials"] = 1000
    return section


def load_tuning(file: str | Path, overrides: Sequence[str] = (), workers: int = 1) -> TuningPlan:
    """Read and validate the tuning of every learning arm of ``file``; nothing runs. Raises ConfigError."""
    overrides = tuple(overrides)
    experiment = load_experiment(file, [*overrides, "tuned=null"])
    spec = parse_tuning(experiment)
    users = tuning_user_seeds(spec.users)
    name = experiment.name + SUFFIX
    arms: dict[str, ArmStudy] = {}
    for point in experiment.grid or [{}]:
        probe = experiment.model_copy(update={"grid": [point], "seeds": experiment.seeds[:1], "tuned": None})
        config = probe.runs()[0]
        if not config.algorithm.trains:
            continue
        arm = tuned_values.arm_name(config)
        if arm in arms:
            raise ConfigError(f"grid: two grid points are both arm {arm!r}; tuning keeps one value per arm")
        space = {k: v for k, v in spec.space.items() if _applies(k, config)}
        fixed = [_as_set(k, v) for k, v in point.items() if k not in space]
        sweep_overrides = [
            *(o for o in overrides if o.split("=", 1)[0].strip() not in space),
            "tuned=null",
            "grid=[]",
            f"name={name}",
            f"seeds={_inline(users)}",
            "task.users=tuning",
            *fixed,
            f"sweep={_inline(_sweep_section(spec, space, f'{name}-{arm}'))}",
        ]
        try:
            plan = load_sweep(file, sweep_overrides, workers=workers)
        except ConfigError as error:
            raise ConfigError(f"{error} (tuning arm {arm})") from None
        first = {key: first_value(d) for key, d in plan.distributions.items()}
        arms[arm] = ArmStudy(arm, plan.config(first, users[0]), plan)
    if not arms:
        raise ConfigError(
            f"grid: experiment {experiment.name!r} has no arm that learns with an algorithm; nothing to tune"
        )
    out = tuned_values.resolve_path(spec.out, experiment.base.backbone)
    return TuningPlan(Path(file), overrides, experiment, spec, users, list(arms.values()), out)


def run_tuning(plan: TuningPlan, tracker: Tracker, workers: int = 1, progress: bool = True) -> Path:
    """Run (or resume) every arm's study, then write the tuned-values file; returns its path.

    Raises what :func:`experiments.sweep.run_sweep` raises (ConfigError, SweepFailed,
    KeyboardInterrupt); the file is written only when every arm's study has finished.
    """
    from experiments.tracking import git_state

    results = {}
    for index, study in enumerate(plan.arms):
        if progress:
            print(f"[{index + 1}/{len(plan.arms)}] tuning {study.arm}", flush=True)
        result = run_sweep(study.plan, tracker, workers=workers, progress=progress)
        if not result.finished:
            raise RuntimeError(f"the study of arm {study.arm} did not finish")
        results[study.arm] = arm_result(study, tracker)
    first = plan.arms[0].config
    tuned = tuned_values.TunedValues(
        backbone=first.backbone,
        base_digest=tuned_values.base_digest(first.backbone),
        suite=first.task.suite,
        criterion=plan.spec.criterion,
        budget={"feedback_events": first.budget.feedback_events, "evaluation_every": first.evaluation.every},
        tuning_users=plan.users,
        trials_per_arm=plan.arms[0].plan.n_trials,
        source={
            "experiment": plan.experiment_name,
            "storage": plan.arms[0].plan.storage_url,
            "commit": git_state().get("commit", "unknown"),
        },
        arms=results,
    )
    command = " ".join(["harness tune", str(plan.file), *(f"--set {o}" for o in plan.overrides)])
    header = (
        f"Tuned values for backbone {tuned.backbone!r} on suite {tuned.suite!r}, written by:\n"
        f"  {command}\n"
        f"Experiments that name this file in tuned: refuse it for another backbone, base build or suite.\n"
        f"Criterion: {tuned.criterion} at the end of each run, mean over the tuning users "
        f"(ties: the smaller value)."
    )
    return tuned_values.write(plan.out, tuned, header)


def arm_result(study: ArmStudy, tracker: Tracker) -> tuned_values.ArmResult:
    """The chosen values of one finished study, with every completed trial's figures."""
    import optuna

    from experiments.sweep import open_storage

    plan = study.plan
    storage = open_storage(plan, lambda *_: None)
    optuna_study = optuna.load_study(study_name=plan.study_name, storage=storage)
    trials = []
    for trial in optuna_study.get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.COMPLETE:
            finals = _trial_finals(tracker, plan, trial.number)
            result = tuned_values.TrialResult(
                params=dict(trial.params),
                criterion=float(trial.value),
                personal_accuracy=_mean(f.get(m.PERSONAL_ACCURACY) for f in finals),
                forgetting=_mean(f.get(m.FORGETTING) for f in finals),
            )
        elif trial.state == optuna.trial.TrialState.FAIL and "error" in trial.user_attrs:
            # an error of the run itself (a diverged loss...), not a dead worker (retried)
            result = tuned_values.TrialResult(
                params=dict(trial.params), criterion=None, error=trial.user_attrs["error"][:300]
            )
        else:
            continue
        trials.append(result)
    completed = [t for t in trials if t.criterion is not None]
    if not completed:
        raise RuntimeError(f"arm {study.arm}: no completed trial to choose from")
    trials.sort(key=lambda t: (_params_key(t.params), t.criterion is None))
    best = choose(completed)
    return tuned_values.ArmResult(
        values=best.params,
        criterion=best.criterion,
        at_edge=at_edge(best.params, plan.distributions),
        trials=trials,
    )


def choose(trials: Sequence[tuned_values.TrialResult]) -> tuned_values.TrialResult:
    """The trial with the highest mean criterion over its repeats; ties go to the smaller values."""
    by_params: dict[str, list[tuned_values.TrialResult]] = {}
    for trial in trials:
        by_params.setdefault(json.dumps(trial.params, sort_keys=True), []).append(trial)
    means = [(sum(t.criterion for t in group) / len(group), group[0]) for group in by_params.values()]
    return min(means, key=lambda pair: (-pair[0], _params_key(pair[1].params)))[1]


def at_edge(values: dict[str, Any], space: dict[str, BaseDistribution]) -> bool:
    """Whether a chosen numeric value sits at the smallest or largest value its distribution allows."""
    for key, value in values.items():
        if key not in space or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        ends = bounds(space[key])
        if ends is not None and any(math.isclose(value, end, rel_tol=1e-9) for end in ends):
            return True
    return False


def _params_key(params: dict[str, Any]) -> tuple:
    return tuple((k, v if isinstance(v, int | float) else str(v)) for k, v in sorted(params.items()))


def _mean(values) -> float | None:
    seen = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(seen) / len(seen) if seen else None


def _trial_finals(tracker: Tracker, plan: SweepPlan, number: int) -> list[dict[str, float]]:
    """The last logged value of every metric of each finished run of one trial (one per tuning user)."""
    runs = tracker.find_runs(
        plan.experiment.name, f"tags.sweep = '{plan.study_name}' and tags.trial = '{number}'"
    )
    return [run.data.metrics for run in runs if run.info.status == "FINISHED"]
