"""The worker loop (one process asking the study for trials and telling their outcomes until it
has ``n_trials`` finished trials, recovering dead workers' trials) and the entry point that runs it
in one or several local processes."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from experiments.signals import sigterm_as_interrupt
from experiments.sweep.bookkeeping import ensure_parent, mark_trial_runs
from experiments.sweep.objective import SweepFailed, TrialRunner
from experiments.sweep.plan import SweepPlan
from experiments.sweep.processes import work_alongside
from experiments.sweep.recovery import WorkerLock, fail_dead_trials, lock_dir, on_stale, requeue
from experiments.sweep.results import SweepResult, summarize
from experiments.sweep.study import Counts, heartbeat, open_storage, open_study, study_counts

if TYPE_CHECKING:  # MLflow loads with the first trial, so a bad sweep file answers before it (~1 s)
    from experiments.tracking import TrackedRun, Tracker


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
        self.storage = open_storage(self.plan, on_stale(self.plan.spec.max_retry, self._close_dead_runs))
        self.study = open_study(self.plan, self.storage)
        self.parent = ensure_parent(self.tracker, self.plan)
        self._current: int | None = None  # the id of the trial this worker runs

    def _close_dead_runs(self, trial: FrozenTrial) -> None:
        mark_trial_runs(self.tracker, self.plan, self.parent.run_id, trial.number, "FAILED", "worker died")

    def recover(self) -> list[int]:
        """Fail the RUNNING trials of dead workers, enqueue their retries, fail their MLflow runs.

        RDB storage: Optuna's heartbeat decides (its stale-trial callback retries and closes the
        runs); journal storage: :func:`recovery.fail_dead_trials`. Returns the journal's failed trials.
        """
        if not self.plan.is_journal:
            optuna.storages.fail_stale_trials(self.study)
            return []
        return fail_dead_trials(
            self.study, self.storage, self.plan.storage_url, self.plan.spec.max_retry, self._close_dead_runs
        )

    def run(self) -> Counts:
        """Ask for, run and tell trials until the study has ``n_trials`` finished; Ctrl-C/SIGTERM stop it.

        Raises SweepFailed after ``max_failed_trials`` trials failed with errors, KeyboardInterrupt
        after marking the running trial FAIL (a retry is queued), its runs and the parent KILLED.
        """
        lock = WorkerLock(lock_dir(self.plan.storage_url)) if self.plan.is_journal else None
        bar = tqdm(
            total=self.plan.n_trials, desc=self.plan.study_name, unit="trial", disable=not self.progress
        )
        runner = TrialRunner(
            self.plan, self.tracker, self.parent, self.storage, lock, bar if self.progress else None
        )
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
            trial = self.study.ask(self.plan.distributions)  # a queued retry first, else a new sample
            self._current = trial._trial_id
            with heartbeat(self.storage, trial._trial_id):
                state = runner.run(trial)
            self._current = None
            error = self.storage.get_trial(trial._trial_id).user_attrs.get("error")
            if state == TrialState.FAIL and error is not None:
                _say(f"trial {trial.number} failed: {error}")

    def _interrupted(self, runner: TrialRunner) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the bookkeeping short
        try:
            runner._close("KILLED", "FAIL", error="interrupted")
            if self._current is not None:
                trial = self.storage.get_trial(self._current)
                if trial.state == TrialState.RUNNING:
                    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                        self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
                    trial = self.storage.get_trial(self._current)
                if trial.state == TrialState.FAIL and "error" not in trial.user_attrs:
                    requeue(self.study, trial, self.plan.spec.max_retry, self.plan.is_journal)
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

    def interrupted() -> None:
        if study_counts(coordinator.study).running == 0:
            coordinator.parent.finish("KILLED", error="interrupted")

    # the coordinator is one of the workers; the others are child processes
    _, statuses = work_alongside(worker_command(plan, tracker), workers, coordinator.run, interrupted)
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
