"""A grid run as an Optuna study (`harness run FILE --workers N / --storage URL`) on the tiny base:
two local workers, a worker SIGKILLed mid-grid and the command rerun, the study's queue.

Everything is real: the Optuna journal file, the MLflow SQLite store, the `harness` processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from experiments.cli import app
from experiments.sweep.grid import enqueue_missing, load_grid, open_grid_study, owner, pop_queued, run_index
from experiments.sweep.recovery import claim, retried_from, worker_is_dead
from experiments.sweep.study import journal_storage, storage_at
from tests.test_sweep import SMALL, harness, subprocess_env, wait_for

runner = CliRunner()
FORMATS = [0.25, 0.5, 1.0]
SEEDS = [0, 1]


def grid_file(tmp_path: Path, name: str = "tgrid") -> Path:
    """Three grid points of the frozen control (a reward weight) x two seeds: six short runs."""
    document = {
        "name": name,
        "task": {"suite": "default", "batch_size": 4},
        "paradigm": {"name": "frozen"},
        "seeds": SEEDS,
        "grid": [{"reward.weights.format": value} for value in FORMATS],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def grid_study(tmp_path: Path, name: str = "tgrid") -> optuna.Study | None:
    journal = tmp_path / "optuna-journal" / f"{name}-grid.log"
    if not journal.exists():
        return None
    storage = journal_storage(journal)
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def grid_runs(tracking_uri: str, name: str = "tgrid") -> tuple[list, list]:
    """(parents with kind=experiment, child runs) of the MLflow experiment."""
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        return [], []
    runs = client.search_runs([found.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "experiment"]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def assert_each_run_finished_once(tracking_uri: str) -> list:
    """Every (grid point, seed) has exactly one FINISHED child, all under the grid's one parent."""
    parents, children = grid_runs(tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [p.info.status for p in parents]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    finished = [c for c in children if c.info.status == "FINISHED"]
    pairs = Counter(
        (float(c.data.params["reward.weights.format"]), int(c.data.tags["seed"])) for c in finished
    )
    assert pairs == Counter({(value, seed): 1 for value in FORMATS for seed in SEEDS}), pairs
    for child in finished:
        assert {"paradigm", "algorithm", "task", "seed", "config_hash", "backbone", "group"} <= set(
            child.data.tags
        )
        assert child.data.tags["grid_study"] == parents[0].data.tags["grid_study"]
    return children


def _stuck_report(stuck: subprocess.TimeoutExpired, tmp_path: Path) -> str:
    """The end of a timed-out command's output, the study's trials and the lock files, for the log."""

    def text(stream: bytes | str | None) -> str:
        return stream.decode(errors="replace") if isinstance(stream, bytes) else (stream or "")

    study = grid_study(tmp_path)
    trials = [f"{t.number} {t.state.name} {t.user_attrs}" for t in (study.trials if study else [])]
    journal = tmp_path / "optuna-journal"
    files = sorted(str(p.relative_to(journal)) for p in journal.rglob("*")) if journal.exists() else []
    return "\n".join(
        [
            "stderr:",
            text(stuck.stderr)[-4000:],
            "stdout:",
            text(stuck.output)[-2000:],
            "trials:",
            *trials,
            "journal files:",
            *files,
        ]
    )


def command(tmp_path: Path, *extra: str) -> list[str]:
    return harness("run", str(grid_file(tmp_path)), "--workers", "2", *SMALL, *extra)


@pytest.mark.timeout(400)
def test_two_local_workers_finish_every_grid_run_once(tmp_path, tracking_uri, tiny_base):
    done = subprocess.run(
        command(tmp_path, "--set", "budget.feedback_events=32"),
        cwd=tmp_path,
        env=subprocess_env(tracking_uri),
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if "personal_accuracy=" in line]
    assert len(lines) == len(FORMATS) * len(SEEDS)  # one line per run, as a serial harness run prints
    assert "6/6 runs finished" in done.stdout
    assert_each_run_finished_once(tracking_uri)
    study = grid_study(tmp_path)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(run_index(t) for t in complete) == list(range(6))
    pids = {t.user_attrs["worker_pid"] for t in complete}
    assert len(pids) == 2  # both workers ran runs: the coordinating process is one of them
    assert not study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING))


@pytest.mark.timeout(500)
def test_a_worker_killed_mid_grid_then_the_command_rerun_finishes_each_run_once(
    tmp_path, tracking_uri, tiny_base
):
    """SIGKILL one worker mid-run (the other retries its run), then every process of the command (a
    machine lost), then rerun the command: each (point, seed) ends FINISHED exactly once."""
    argv = command(tmp_path, "--set", "budget.feedback_events=48", "--quiet")
    env = subprocess_env(tracking_uri)
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, start_new_session=True)

    def running_trial_with_a_run():
        study = grid_study(tmp_path)
        if study is None:
            return None
        running = [  # a child worker's: the coordinating process is a worker too, but killing it is the
            # next step (the whole command)
            t
            for t in study.get_trials(states=(TrialState.RUNNING,))
            if "mlflow_run_id" in t.user_attrs and t.user_attrs["worker_pid"] != first.pid
        ]
        return running[0] if running else None

    try:
        victim = wait_for(running_trial_with_a_run, 240, "a running grid run", first)
        os.kill(victim.user_attrs["worker_pid"], signal.SIGKILL)
        # the surviving worker fails the dead one's trial (its lock is free) and queues the run again
        wait_for(
            lambda: grid_study(tmp_path).trials[victim.number].state == TrialState.FAIL,
            240,
            "the killed worker's trial to be recovered",
            first,
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # then the whole command, mid-grid
        first.wait()
    study = grid_study(tmp_path)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) < 6  # work is left for the rerun

    try:
        second = subprocess.run(
            [a for a in argv if a != "--quiet"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    except subprocess.TimeoutExpired as stuck:  # seen twice under heavy load: keep what it was doing
        pytest.fail(f"the rerun did not finish in 400 s\n{_stuck_report(stuck, tmp_path)}")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "6/6 runs finished" in second.stdout
    children = assert_each_run_finished_once(tracking_uri)
    killed = [c for c in children if c.info.run_id == victim.user_attrs["mlflow_run_id"]]
    assert killed[0].info.status == "FAILED" and killed[0].data.tags["error"] == "worker died"
    # its run retried: finished once; a retry that was running when the whole command died is the
    # other kind of casualty (failed, "worker died") and was retried again by the rerun
    retried = [c for c in children if c.data.tags.get("retry_of") == str(victim.number)]
    assert [c.info.status for c in retried].count("FINISHED") == 1
    assert all(c.data.tags["error"] == "worker died" for c in retried if c.info.status != "FINISHED")
    assert all(c.info.status in ("FINISHED", "FAILED") for c in children)  # nothing left RUNNING

    third = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr[-2000:]  # a finished grid: nothing runs again
    assert len(grid_runs(tracking_uri)[1]) == len(children)


def test_the_queue_runs_each_run_once_when_two_workers_queued_it(tmp_path, monkeypatch):
    """Two machines starting together may both queue a run: the later trial is a duplicate."""
    monkeypatch.chdir(tmp_path)
    plan = load_grid(grid_file(tmp_path), ["backbone=builtin:tiny"], workers=2)
    storage = storage_at(plan.storage_url, heartbeat_interval=60, grace_period=180, on_stale=lambda *_: None)
    study = open_grid_study(plan, storage)
    assert enqueue_missing(study, plan) == list(range(6))
    assert enqueue_missing(study, plan) == []  # queued runs are live: nothing twice from one worker
    study.enqueue_trial({"run": 0})  # what another machine's enqueue_missing does at the same moment
    first, second = pop_queued(study, storage), pop_queued(study, storage)
    assert first != second and storage.get_trial(first).number == 0
    assert owner(study, 0, 0) is None  # the earlier trial runs it
    assert owner(study, 0, 6) == 0  # the duplicate sees it and steps aside
    study.tell(0, 0.5)
    assert owner(study, 0, 6) == 0  # and once it is complete
    assert enqueue_missing(study, plan) == []


def test_a_run_queued_again_after_a_failed_attempt_is_its_retry(tmp_path, monkeypatch):
    """The worker that fails a dead worker's trial may die before queueing the retry (the whole
    command killed): the rerun queues the run again as that attempt's retry, lineage kept."""
    monkeypatch.chdir(tmp_path)
    plan = load_grid(grid_file(tmp_path), ["backbone=builtin:tiny"], workers=2)
    storage = storage_at(plan.storage_url, heartbeat_interval=60, grace_period=180, on_stale=lambda *_: None)
    study = open_grid_study(plan, storage)
    enqueue_missing(study, plan)
    first = pop_queued(study, storage)
    attempt = optuna.Trial(study, first)
    attempt.suggest_int("run", 0, plan.n_runs - 1)
    attempt.set_user_attr("mlflow_run_id", "0123abcd")
    storage.set_trial_state_values(first, TrialState.FAIL)  # failed as a dead worker's; no retry queued
    assert enqueue_missing(study, plan) == [0]
    retry = study.get_trials(states=(TrialState.WAITING,))[-1]
    assert run_index(retry) == 0 and retry.user_attrs["retry_of"] == 0
    assert "mlflow_run_id" not in retry.user_attrs  # the attempt's run is not the retry's
    assert retried_from(retry) == 0  # what the worker tags the retry's MLflow run with
    assert retried_from(study.get_trials(states=(TrialState.WAITING,))[0]) is None  # a first attempt
    popped = [pop_queued(study, storage) for _ in range(plan.n_runs)]
    optuna.Trial(study, popped[-1]).suggest_int("run", 0, plan.n_runs - 1)  # the retry, queued last
    assert storage.get_trial(popped[-1]).params == {"run": 0}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--workers", "2", "--storage", "sqlite:///optuna.db"], "SQLite locks the whole database"),
        (["--workers", "2", "--from-run", "0123abcd"], "--from-run reruns one logged run"),
    ],
)
def test_bad_grid_options_exit_2_with_one_line(tmp_path, monkeypatch, extra, fragment):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", str(grid_file(tmp_path)), "--set", "backbone=builtin:tiny", *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "optuna-journal").exists()  # nothing written


def test_a_trial_seen_half_claimed_is_not_taken_for_a_dead_workers():
    """A worker records its lock, pid and host one write at a time; a trial seen between the writes
    is still being claimed. (Seen with two grid workers under load: a trial showing its host but no
    pid yet was failed as a dead worker's while it ran.)"""
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("worker_host", socket.gethostname())  # host first, as a worker once wrote it
    assert not worker_is_dead(study.trials[0])
    claim(trial, None)
    assert not worker_is_dead(study.trials[0])  # this process: alive
