"""The grid's workers: each pops a queued run of the grid study, runs it as a child of the grid's
one MLflow parent run and tells the study its outcome, until no run is queued or running; and the
entry point that runs the grid in one or several local processes (``run_grid``).

Crash safety is the sweep's (``recovery``): on journal storage each worker holds a lock file, and
a RUNNING trial whose lock is free is failed, its MLflow run marked FAILED ``worker died``, and
queued again; on RDB storage a worker sends Optuna heartbeats while it runs, and a trial silent
for ``GRACE_PERIOD`` seconds is treated alike. Every worker waits for the others' runs (so it can
retry the run of one that dies) and ends with the grid's result.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from experiments.errors import describe_error
from experiments.signals import sigterm_as_interrupt
from experiments.sweep.bookkeeping import ensure_grid_parent
from experiments.sweep.grid import (
    RUN_PARAM,
    SHOWN_METRICS,
    VALUE_METRIC,
    GridCounts,
    GridPlan,
    GridResult,
    enqueue_missing,
    grid_counts,
    grid_rows,
    open_grid_study,
    owner,
    pop_queued,
    run_index,
)
from experiments.sweep.processes import work_alongside
from experiments.sweep.recovery import (
    WorkerLock,
    claim,
    fail_dead_trials,
    lock_dir,
    on_stale,
    requeue,
    retried_from,
)
from experiments.sweep.study import heartbeat, storage_at

if TYPE_CHECKING:  # MLflow loads once the file is known to be good
    from experiments.tracking import TrackedRun, Tracker


class GridWorker:
    """One process on the grid study: queue what is missing, run queued runs, wait for the others."""

    def __init__(self, plan: GridPlan, tracker: Tracker, progress: bool = True, enqueue: bool = True):
        self.plan, self.tracker, self.progress = plan, tracker, progress
        self.poll_seconds = 2.0
        self.storage = storage_at(
            plan.storage_url,
            heartbeat_interval=plan.heartbeat_interval,
            grace_period=plan.grace_period,
            on_stale=on_stale(plan.max_retry, self._close_dead_run),
        )
        self.study = open_grid_study(plan, self.storage)
        self.parent = ensure_grid_parent(tracker, plan)
        self._groups: list[str] | None = None
        self._current: tuple[int, TrackedRun | None] | None = None  # (trial id, its MLflow run)
        self.recover()
        self.close_stray_runs()
        if enqueue:
            enqueue_missing(self.study, plan)

    def _close_dead_run(self, trial: FrozenTrial) -> None:
        self._close_run(trial, "FAILED", "worker died")

    def _close_run(self, trial: FrozenTrial, status: str, error: str) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and self.tracker.client.get_run(run_id).info.status == "RUNNING":
            self.tracker.attach(run_id).finish(status, error=error)

    def close_stray_runs(self) -> list[str]:
        """Mark FAILED (``worker died``) the grid's MLflow runs left RUNNING with no running trial.

        A worker that dies between failing a dead worker's trial and closing its MLflow run leaves
        that run RUNNING; so does one killed between creating a run and recording its id on the
        trial. A run is left alone while a running trial of its grid point and seed may own it, and
        ends FINISHED when its trial is complete (its worker tells the trial, then closes the run).
        """
        live = [
            (run_index(t), t.user_attrs.get("mlflow_run_id"))
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        ]
        complete = {
            t.user_attrs.get("mlflow_run_id")
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        }
        closed = []
        query = f"tags.grid_study = '{self.plan.study_name}' and attributes.status = 'RUNNING'"
        for run in self.tracker.find_runs(self.plan.experiment.name, query):
            if run.info.run_id == self.parent.run_id or "grid_run" not in run.data.tags:
                continue
            index = int(run.data.tags["grid_run"])
            if any(i == index and owner_id in (None, run.info.run_id) for i, owner_id in live):
                continue
            if run.info.run_id in complete:
                self.tracker.attach(run.info.run_id).finish("FINISHED")
                continue
            self.tracker.attach(run.info.run_id).finish("FAILED", error="worker died")
            closed.append(run.info.run_id)
        return closed

    def recover(self) -> list[int]:
        """Fail the RUNNING trials of dead workers, queue their runs again, fail their MLflow runs."""
        if not self.plan.is_journal:
            optuna.storages.fail_stale_trials(self.study)  # the heartbeat's verdict; the callback retries
            return []
        return fail_dead_trials(
            self.study, self.storage, self.plan.storage_url, self.plan.max_retry, self._close_dead_run
        )

    def run(self) -> GridCounts:
        """Run queued runs until none is queued or running; Ctrl-C/SIGTERM stop cleanly.

        An interrupt fails the running trial and queues its run again (its MLflow run KILLED), then
        propagates KeyboardInterrupt.
        """
        lock = WorkerLock(lock_dir(self.plan.storage_url)) if self.plan.is_journal else None
        try:
            with sigterm_as_interrupt():
                while True:
                    for number in self.recover():
                        _say(f"trial {number}: its worker died; marked FAIL and queued again")
                    trial_id = pop_queued(self.study, self.storage)
                    if trial_id is not None:
                        self._run_trial(trial_id, lock)
                        continue
                    counts = grid_counts(self.study, self.plan.n_runs)
                    if counts.done:
                        return counts
                    time.sleep(self.poll_seconds)  # the last runs are with other workers
        except (KeyboardInterrupt, SystemExit):
            self._interrupted()
            raise
        finally:
            if lock is not None:
                lock.release()

    def _run_trial(self, trial_id: int, lock: WorkerLock | None) -> None:
        trial = optuna.Trial(self.study, trial_id)
        claim(trial, lock)
        self._current = (trial_id, None)
        with heartbeat(self.storage, trial_id):
            try:
                index = trial.suggest_int(RUN_PARAM, 0, self.plan.n_runs - 1)
                first = owner(self.study, index, trial.number)
                if first is not None:  # queued twice by workers starting together: the other runs it
                    trial.set_user_attr("duplicate_of", first)
                    self.study.tell(trial, state=TrialState.FAIL)
                else:
                    self._execute(trial, index)
            except optuna.exceptions.UpdateFinishedTrialError:
                self._taken_over(trial.number)
        self._current = None

    def _taken_over(self, number: int) -> None:
        """Another worker failed this trial as a dead worker's (its retry is queued): end its run."""
        run = self._current[1] if self._current is not None else None
        if run is not None and not run.closed:
            run.finish(
                "FAILED", error="taken over: another worker judged this one dead and queued the run again"
            )
        _say(f"trial {number}: another worker judged this one dead and queued its run again; moving on")

    def _execute(self, trial: optuna.Trial, index: int) -> None:
        from experiments.run import execute, prepare_backbones, run_of_several
        from experiments.tracking import group_labels

        config = self.plan.configs[index]
        if self._groups is None:
            self._groups = group_labels(self.plan.configs)
        prepare_backbones([config], self.tracker, progress=False)  # a base build is not this run's time
        tags = {"grid_study": self.plan.study_name, "grid_run": index}
        retry_of = retried_from(self.storage.get_trial(trial._trial_id))
        if retry_of is not None:
            tags["retry_of"] = retry_of
        if self.progress:
            print(f"[{index + 1}/{self.plan.n_runs}] {config.run_name()}", flush=True)
        run = self.tracker.start_config_run(
            self.plan.experiment.name, config, self._groups[index], self.parent, tags=tags
        )
        trial.set_user_attr("mlflow_run_id", run.run_id)
        self._current = (trial._trial_id, run)
        try:
            with run_of_several():
                final = execute(config, run, self.tracker, self.progress)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # recorded; the grid goes on (a rerun of the command retries it)
            described = describe_error(error)
            run.finish("FAILED", error=described)
            trial.set_user_attr("error", described[:1000])
            self.study.tell(trial, state=TrialState.FAIL)
            _say(f"{config.run_name()} failed ({described})")
            return
        # the trial first: a run whose trial another worker took over must not end FINISHED beside its retry
        trial.set_user_attr("final", {k: float(final[k]) for k in SHOWN_METRICS if k in final})
        try:
            self.study.tell(trial, float(final[VALUE_METRIC]))
        except ValueError:  # "Cannot tell a FAIL trial": taken over between the two writes
            if self.storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                raise
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} was failed") from None
        run.finish()

    def _interrupted(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the bookkeeping short
        try:
            if self._current is not None:
                trial_id, run = self._current
                if run is not None:
                    run.finish("KILLED", error="interrupted")
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    if self.storage.set_trial_state_values(trial_id, TrialState.FAIL):
                        requeue(
                            self.study,
                            self.storage.get_trial(trial_id),
                            self.plan.max_retry,
                            self.plan.is_journal,
                        )
            if grid_counts(self.study, self.plan.n_runs).running == 0:
                self.parent.finish("KILLED", error="interrupted")
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def result(self) -> GridResult:
        """The grid's runs; once none is queued or running, the parent run ends FINISHED or FAILED."""
        counts = grid_counts(self.study, self.plan.n_runs)
        rows = grid_rows(self.study, self.plan)
        if counts.done:
            failed = [row for row in rows if row.status == "FAILED"]
            self.parent.set_tags({"n_failed": len(failed)})
            self.parent.finish(
                "FAILED" if failed else "FINISHED",
                error="; ".join(f"{r.name}: {r.error}" for r in failed) if failed else None,
            )
        return GridResult(self.plan.study_name, counts, rows)


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def run_grid(plan: GridPlan, tracker: Tracker, workers: int = 1, progress: bool = True) -> GridResult:
    """Run (or resume) the grid study with ``workers`` local processes; returns its result.

    Raises ConfigError (the storage cannot be opened), KeyboardInterrupt (after marking what was
    running). A run that raises is FAILED in MLflow and in the result; the others go on.
    """
    if workers == 1:
        worker = GridWorker(plan, tracker, progress)
        worker.run()
        return worker.result()
    coordinator = GridWorker(plan, tracker, progress)  # queues the runs before any worker starts
    if grid_counts(coordinator.study, plan.n_runs).done:  # resumed after the end: nothing to start
        return coordinator.result()

    def interrupted() -> None:
        if grid_counts(coordinator.study, plan.n_runs).running == 0:
            coordinator.parent.finish("KILLED", error="interrupted")

    # the coordinator is one of the workers, and like each of them runs until no run is queued or
    # running (so it retries the run of a worker that dies); the others are child processes
    work_alongside(worker_command(plan, tracker), workers, coordinator.run, interrupted)
    return coordinator.result()


def worker_command(plan: GridPlan, tracker: Tracker) -> list[str]:
    """The command line of one local worker: this grid, one process, no output but errors, and no
    queueing of its own (the coordinator queued the runs; a run that fails is not retried at once)."""
    command = [sys.executable, "-m", "experiments.cli", "run", str(plan.file), "--workers", "1"]
    command += ["--storage", plan.storage_url, "--quiet", "--queued-only", "--tracking-uri", tracker.uri]
    for override in plan.overrides:
        command += ["--set", override]
    return command
