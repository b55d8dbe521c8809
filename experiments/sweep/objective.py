"""One trial, asked of the study and told its outcome (ask-and-tell): one nested MLflow run per seed,
and the mean objective value(s) told to the study. A trial's outcome is a state, not an exception:
only an interrupt (and Optuna's own ``TrialPruned``, raised by the evaluation callback to stop a run
mid-way) unwinds through it."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from experiments.config import RunConfig
from experiments.errors import describe_error
from experiments.sweep.plan import SweepPlan
from experiments.sweep.recovery import WorkerLock, claim, retried_from
from experiments.sweep.study import LIVE_STATES

if TYPE_CHECKING:  # MLflow loads with the first trial, so a bad sweep file answers before it (~1 s)
    from experiments.tracking import TrackedRun, Tracker


class SweepFailed(RuntimeError):
    """Too many trials failed with errors; the sweep stopped."""


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
    """Runs asked trials: one trial = one nested MLflow run per seed; tells the mean objective(s).

    Intermediate values (single objective): each evaluation's objective is reported at step =
    feedback events this trial has consumed over its seeds so far (the step-0 evaluation of a
    later seed, which would repeat the previous seed's last step, is not reported), and the
    pruner may stop the trial there (its runs end KILLED with ``trial_state=PRUNED``).
    """

    plan: SweepPlan
    tracker: Tracker
    parent: TrackedRun
    storage: BaseStorage
    lock: WorkerLock | None
    bar: Any = None
    _runs: list[TrackedRun] = field(default_factory=list)
    _last_events: int = 0  # feedback events at the latest evaluation of the running seed

    def run(self, trial: optuna.Trial) -> TrialState:
        """Run an asked trial (its params already sampled) and tell the study how it ended.

        COMPLETE: its runs end FINISHED and its values are the means over seeds; PRUNED: KILLED;
        FAIL: a run raised (``error`` user attr, runs FAILED), or the trial was not needed because
        ``n_trials`` trials numbered below it are finished or under way (``surplus``: two workers
        asked at once). An interrupt ends its runs KILLED and propagates, leaving the trial RUNNING
        for ``Worker`` to fail and queue again.
        """
        claim(trial, self.lock)
        if is_surplus(trial.study, trial.number, self.plan.n_trials):
            trial.set_user_attr("surplus", True)
            return self._tell(trial, TrialState.FAIL)
        params = {key: trial.params[key] for key in self.plan.distributions}
        self._runs = []
        try:
            values = self._values(trial, self._run_seeds(trial, params))
        except optuna.TrialPruned:
            self._close("KILLED", "PRUNED")
            return self._tell(trial, TrialState.PRUNED)
        except (KeyboardInterrupt, SystemExit):
            self._close("KILLED", "FAIL", error="interrupted")
            raise
        except Exception as error:  # the run's own error: recorded, and the sweep goes on
            described = describe_error(error)
            trial.set_user_attr("error", described[:1000])
            self._close("FAILED", "FAIL", error=described)
            return self._tell(trial, TrialState.FAIL)
        self._close("FINISHED", "COMPLETE")
        self.parent.log_metrics(
            {f"sweep/{k}": v for k, v in zip(self.plan.metrics, values, strict=True)}, trial.number
        )
        self.parent.flush()
        return self._tell(trial, TrialState.COMPLETE, values)

    def _tell(self, trial: optuna.Trial, state: TrialState, values: list[float] | None = None) -> TrialState:
        """Tell the study; a trial another worker already failed as a dead worker's stays FAIL."""
        try:
            trial.study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            return TrialState.FAIL
        except ValueError:  # "Cannot tell a FAIL trial": taken over between two writes
            if self.storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                raise
            return TrialState.FAIL
        return state

    def _run_seeds(self, trial: optuna.Trial, params: dict[str, Any]) -> list[dict[str, float]]:
        from experiments.tracking import group_labels

        finals, offset = [], 0
        retry_of = retried_from(self.storage.get_trial(trial._trial_id))
        for index, seed in enumerate(self.plan.seeds):
            config = self.plan.config(params, seed)
            _prepare_backbone(config, self.tracker)  # a shared base build is its own run, not this one's time
            group = f"{group_labels([config])[0]}/t{trial.number}"  # adapter/grpo/t3: one per trial
            tags = {"trial": trial.number, "sweep": self.plan.study_name, "trial_state": "RUNNING"}
            if retry_of is not None:
                tags["retry_of"] = retry_of
            run = self.tracker.start_config_run(
                self.plan.experiment.name,
                config,
                group,
                self.parent,
                name=trial_run_name(config, trial.number),
                tags=tags,
            )
            self._runs.append(run)
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
    from experiments.run import execute, run_of_several  # the runner imports torch; keep `config show` light

    with run_of_several():  # (the trials before it collected first: their models and optimizers)
        return execute(config, run, tracker, progress=False, on_eval=on_eval)
