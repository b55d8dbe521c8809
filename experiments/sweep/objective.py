"""One trial: the objective Optuna calls, running one nested MLflow run per seed and returning the
mean objective value(s); the exceptions that end a trial or the sweep."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from experiments.config import RunConfig
from experiments.sweep.plan import SweepPlan
from experiments.sweep.recovery import WorkerLock, claim
from experiments.sweep.spec import FloatParam, IntParam
from experiments.sweep.study import LIVE_STATES

if TYPE_CHECKING:  # MLflow loads with the first trial, so a bad sweep file answers before it (~1 s)
    from experiments.tracking import TrackedRun, Tracker


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
    ahead = [t for t in study.get_trials(deepcopy=False, states=LIVE_STATES) if t.number < number]
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
        claim(trial, self.lock)
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
