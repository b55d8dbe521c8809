"""Sweeps end to end on the tiny base: crash recovery, local workers, Pareto fronts, validation.

Everything is real: the Optuna journal file, the MLflow SQLite store, the `harness` processes
(killed with SIGKILL where a crash is the point).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from experiments.cli import app
from experiments.config import EXPERIMENT_KEYS, SEED_KEYS
from experiments.sweep import study as sweep_study
from experiments.sweep.study import journal_storage, storage_at
from tests.conftest import ROOT, TINY

runner = CliRunner()
#: A run of a few seconds: the frozen control, 16 feedback events, evaluated every 8.
SMALL = [
    "--set",
    TINY,
    "--set",
    "budget.feedback_events=16",
    "--set",
    "evaluation.every=8",
    "--set",
    "evaluation.general_items=8",
]


def sweep_file(tmp_path: Path, name: str = "tsweep", **sweep: object) -> Path:
    """A small experiment file whose sweep varies two reward weights of the frozen control."""
    section = {
        "space": {
            "reward.weights.search_cost": {"type": "float", "low": 0.0, "high": 1.0},
            "reward.weights.format": {"type": "categorical", "choices": [0.25, 0.5, 1.0]},
        },
        "objectives": ["eval/personal_accuracy"],
        "n_trials": 3,
        "seeds": [0, 1],
        **sweep,
    }
    document = {
        "name": name,
        "task": {"suite": "default", "batch_size": 4},
        "paradigm": {"name": "frozen"},
        "seeds": [0],
        "sweep": section,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def subprocess_env(tracking_uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "HARNESS_TRACKING_URI": tracking_uri,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }


def journal_study(path: Path, name: str = "tsweep") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=journal_storage(path))


def sweep_runs(tracking_uri: str, experiment: str = "tsweep") -> tuple[list, list]:
    """(parents with kind=sweep, nested runs) of the MLflow experiment."""
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def assert_exactly_n_complete(study: optuna.Study, tracking_uri: str, n_trials: int, seeds: list[int]):
    """n complete trials; one FINISHED MLflow child per complete (trial, seed), all under one parent."""
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == n_trials
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    parents, children = sweep_runs(tracking_uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    finished = [c for c in children if c.info.status == "FINISHED"]
    pairs = Counter((int(c.data.tags["trial"]), int(c.data.tags["seed"])) for c in finished)
    assert set(pairs.values()) == {1}, pairs  # no duplicated trial-seed
    assert set(pairs) == {(t.number, seed) for t in complete for seed in seeds}
    for child in finished:
        assert child.data.tags["trial_state"] == "COMPLETE"
        assert child.data.tags["sweep"] == "tsweep"
        assert {"paradigm", "algorithm", "task", "seed", "config_hash", "backbone"} <= set(child.data.tags)
        assert child.info.run_name.endswith(f"-t{child.data.tags['trial']}-s{child.data.tags['seed']}")
        assert child.data.tags["group"] == f"frozen/t{child.data.tags['trial']}"  # the seeds of one trial
        assert "reward.weights.search_cost" in child.data.params
    return complete, children


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep exited ({process.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def running_trial_with_a_run(journal: Path, tracking_uri: str):
    """A RUNNING trial whose worker has started an MLflow run for it, or None."""
    if not journal.exists():
        return None
    try:
        study = journal_study(journal)
        running = study.get_trials(states=(TrialState.RUNNING,))
        if not running:
            return None
        _, children = sweep_runs(tracking_uri)
    except (KeyError, AttributeError, mlflow.exceptions.MlflowException):
        return None  # the study or the experiment does not exist yet
    numbers = {t.number for t in running}
    live = [c for c in children if c.info.status == "RUNNING" and int(c.data.tags["trial"]) in numbers]
    return int(live[0].data.tags["trial"]) if live else None


@pytest.mark.timeout(300)
def test_a_sweep_killed_mid_trial_resumes_to_exactly_n_trials(tmp_path, tracking_uri, tiny_base):
    file = sweep_file(tmp_path)
    command = harness("sweep", str(file), *SMALL, "--set", "budget.feedback_events=32", "--quiet")
    env = subprocess_env(tracking_uri)
    journal = tmp_path / "optuna-journal" / "tsweep.log"
    first = subprocess.Popen(command, cwd=tmp_path, env=env)
    try:
        killed = wait_for(
            lambda: running_trial_with_a_run(journal, tracking_uri), 150, "a running trial", first
        )
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    study = journal_study(journal)
    assert study.trials[killed].state == TrialState.RUNNING  # stuck, until the next start

    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-2000:]

    study = journal_study(journal)
    complete, children = assert_exactly_n_complete(study, tracking_uri, 3, [0, 1])
    assert study.trials[killed].state == TrialState.FAIL
    retries = [t for t in complete if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1 and retries[0].params == study.trials[killed].params
    dead = [c for c in children if int(c.data.tags["trial"]) == killed]
    assert dead and all(c.info.status == "FAILED" for c in dead)
    assert all(c.data.tags["error"] == "worker died" for c in dead)


@pytest.mark.timeout(400)
def test_two_local_workers_complete_the_study_without_losing_or_repeating_trials(
    tmp_path, tracking_uri, tiny_base
):
    file = sweep_file(tmp_path, n_trials=4, seeds=[0])
    # trials of 32 events: long enough that the second worker, however late its imports finish under
    # load, still finds a trial to run
    done = subprocess.run(
        harness("sweep", str(file), "--workers", "2", *SMALL, "--set", "budget.feedback_events=32"),
        cwd=tmp_path,
        env=subprocess_env(tracking_uri),
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best trial of study 'tsweep'" in done.stdout
    study = journal_study(tmp_path / "optuna-journal" / "tsweep.log")
    assert_exactly_n_complete(study, tracking_uri, 4, [0])
    workers = Counter(t.user_attrs["worker_pid"] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert len(workers) == 2, workers  # both workers finished trials, not one worker every trial
    # a trial that was not needed (two workers asking at once) is FAIL and marked surplus, nothing else
    assert all(t.user_attrs.get("surplus") for t in study.get_trials(states=(TrialState.FAIL,))), [
        (t.number, t.user_attrs, t.system_attrs) for t in study.get_trials(states=(TrialState.FAIL,))
    ]


def test_sqlite_storage_is_refused_for_parallel_workers(tmp_path):
    file = sweep_file(tmp_path)
    result = runner.invoke(
        app, ["sweep", str(file), "--workers", "2", "--storage", f"sqlite:///{tmp_path / 'o.db'}"]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SQLite locks" in lines[0] and "journal" in lines[0] and "PostgreSQL" in lines[0]
    assert not (tmp_path / "o.db").exists()


@pytest.mark.timeout(60)
def test_a_journal_lock_left_by_a_killed_process_is_removed_after_its_grace(tmp_path, monkeypatch):
    """A process SIGKILLed while writing the journal leaves Optuna's lock behind; the next process
    removes it after the grace period, also for the relative journal path a grid uses (the lock
    is a symlink to the journal: relative, it dangled, and the rerun waited forever)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep_study, "JOURNAL_LOCK_GRACE_SECONDS", 3)
    url = "optuna-journal/t.log"
    killed = storage_at(url, heartbeat_interval=60, grace_period=180, on_stale=lambda *_: None)
    optuna.create_study(storage=killed, study_name="t")
    assert killed._backend._lock.acquire()  # held, never released: its process died
    assert os.path.islink(tmp_path / "optuna-journal" / "t.log.lock")

    written: list[int] = []
    rerun = storage_at(url, heartbeat_interval=60, grace_period=180, on_stale=lambda *_: None)
    writer = threading.Thread(
        target=lambda: written.append(optuna.load_study(study_name="t", storage=rerun).ask().number),
        daemon=True,
    )
    writer.start()
    writer.join(30)
    assert written == [0], "the rerun is still waiting for the dead process's journal lock"


@pytest.mark.timeout(240)
def test_a_multi_objective_sweep_reports_its_pareto_front(tmp_path, tracking_uri, tiny_base, monkeypatch):
    monkeypatch.chdir(tmp_path)
    objectives = [
        {"metric": "eval/personal_accuracy"},
        {"metric": "eval/search_calls_per_query", "direction": "minimize"},
    ]
    file = sweep_file(tmp_path, objectives=objectives, seeds=[0], sampler={"name": "random", "seed": 3})
    result = runner.invoke(app, ["sweep", str(file), *SMALL, "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sweep", str(file), *SMALL])  # resumes a finished study: reports it
    assert result.exit_code == 0, result.output
    assert "Pareto front" in result.stdout
    study = journal_study(tmp_path / "optuna-journal" / "tsweep.log")
    assert study.metric_names == ["eval/personal_accuracy", "eval/search_calls_per_query"]
    front = sorted(t.number for t in study.best_trials)
    table = result.stdout.split("Pareto front", 1)[1].splitlines()
    assert "eval/personal_accuracy" in table[1] and "eval/search_calls_per_query" in table[1]
    assert sorted(int(line.split()[0]) for line in table[2 : 2 + len(front)]) == front
    parents, _ = sweep_runs(tracking_uri)
    local = mlflow.artifacts.download_artifacts(
        run_id=parents[0].info.run_id, artifact_path="pareto_front.json", tracking_uri=tracking_uri
    )
    logged = json.loads(Path(local).read_text())
    assert sorted(entry["trial"] for entry in logged) == front
    for entry in logged:
        assert entry["values"]["eval/personal_accuracy"] == study.trials[entry["trial"]].values[0]
        assert set(entry["params"]) == {"reward.weights.search_cost", "reward.weights.format"}


@pytest.mark.timeout(240)
def test_a_grid_sweep_with_a_pruner_is_asked_and_told_to_the_end(
    tmp_path, tracking_uri, tiny_base, monkeypatch
):
    """Ask-and-tell outside ``Study.optimize``: the grid sampler's last point is told without the
    ``study.stop()`` that only works inside ``optimize``, and a pruned trial is told PRUNED, its
    run KILLED. The grid's seed 0 visits oracle first; frozen scores below it at the first
    evaluation, so the percentile pruner stops it there."""
    monkeypatch.chdir(tmp_path)
    file = sweep_file(
        tmp_path,
        space={"paradigm.name": {"type": "categorical", "choices": ["frozen", "oracle"]}},
        sampler={"name": "grid", "seed": 0},
        pruner={"name": "percentile", "percentile": 50, "n_startup_trials": 1},
        n_trials=None,
        seeds=[0],
    )
    result = runner.invoke(app, ["sweep", str(file), *SMALL, "--quiet"])
    assert result.exit_code == 0, result.output
    study = journal_study(tmp_path / "optuna-journal" / "tsweep.log")
    outcomes = [(t.params["paradigm.name"], t.state) for t in study.trials]
    assert outcomes == [("oracle", TrialState.COMPLETE), ("frozen", TrialState.PRUNED)]
    assert list(study.trials[1].intermediate_values) == [0]  # stopped at its first evaluation
    parents, children = sweep_runs(tracking_uri)
    assert parents[0].info.status == "FINISHED"
    states = {c.data.tags["trial"]: (c.info.status, c.data.tags["trial_state"]) for c in children}
    assert states == {"0": ("FINISHED", "COMPLETE"), "1": ("KILLED", "PRUNED")}


@pytest.mark.parametrize(
    ("sweep", "fragment"),
    [
        ({"n_trail": 3}, "unknown key 'sweep.n_trail'"),
        (
            {"space": {"reward.weights.search_cost": {"type": "float", "low": 1.0, "high": 0.5}}},
            "sweep.space.reward.weights.search_cost.low: 1.0 must be below high",
        ),
        (
            {"space": {"reward.weights.search_cost": {"type": "float", "low": 0.0, "hi": 0.5}}},
            "unknown key 'sweep.space.reward.weights.search_cost.hi'",
        ),
        (
            {"space": {"reward.weights.serch_cost": {"type": "float", "low": 0.0, "high": 0.5}}},
            "sweep.space.reward.weights.serch_cost: not a config field",
        ),
        (
            {"space": {"reward.weights.search_cost": {"type": "float", "low": -1.0, "high": 0.5}}},
            "sweep.space.reward.weights.search_cost.low: -1.0 is not valid here",
        ),
        (
            {"space": {"paradigm.top_k": {"type": "gaussian"}}},
            "sweep.space.paradigm.top_k.type: must be one of float, int, categorical",
        ),
        ({"objectives": ["eval/personal_acuracy"]}, "sweep.objectives.0.metric: unknown metric"),
        ({"objectives": ["train/reward"]}, "is a training metric"),
        (
            {"objectives": [{"metric": "eval/personal_accuracy", "direction": "up"}]},
            "sweep.objectives.0.direction",
        ),
        (
            {"objectives": ["eval/personal_accuracy", "eval/forgetting"], "pruner": "median"},
            "sweep.pruner: pruning needs a single objective",
        ),
        ({"sampler": "grid"}, "sweep.space.reward.weights.search_cost.step: the grid sampler needs a step"),
        ({"n_trials": 0}, "sweep.n_trials"),
    ],
)
def test_bad_sweep_sections_exit_2_with_one_line_naming_the_field(tmp_path, monkeypatch, sweep, fragment):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sweep", str(sweep_file(tmp_path, **sweep)), "--set", TINY])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "optuna-journal").exists()  # nothing written


def test_a_file_without_a_sweep_section_and_a_swept_set_key_are_refused(tmp_path):
    result = runner.invoke(app, ["sweep", str(ROOT / "experiments" / "smoke.yaml")])
    assert result.exit_code == 2 and "has no sweep: section" in result.stderr
    file = sweep_file(tmp_path)
    result = runner.invoke(app, ["sweep", str(file), "--set", "reward.weights.format=0.3"])
    assert result.exit_code == 2 and "is swept by sweep.space" in result.stderr


def test_the_named_sweep_experiments_validate():
    for name in ("reward_weights", "algorithms", "search_penalty", "lora_rank", "memory", "feedback"):
        result = runner.invoke(app, ["config", "show", str(ROOT / "experiments" / f"{name}.yaml")])
        assert result.exit_code == 0, (name, result.output)
    from experiments.sweep import load_sweep

    for name in ("reward_weights", "search_penalty", "lora_rank", "memory", "feedback", "algorithms"):
        plan = load_sweep(ROOT / "experiments" / f"{name}.yaml")
        assert plan.n_trials >= 1 and plan.directions


def test_every_worker_walks_a_grid_in_the_same_order(tmp_path, monkeypatch):
    # Optuna's GridSampler gives trial k the k-th point of its own shuffled order: workers whose
    # orders differ run some points twice and others never
    from experiments.sweep import _sampler, load_sweep

    space = {"reward.weights.format": {"type": "categorical", "choices": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}}
    plan = load_sweep(sweep_file(tmp_path, space=space, sampler="grid", n_trials=None))
    orders = []
    for pid in (1234, 5678):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        orders.append(_sampler(plan)._all_grids)
    assert orders[0] == orders[1] and sorted(orders[0]) == [(v,) for v in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)]


@pytest.mark.parametrize("top", sorted(EXPERIMENT_KEYS | SEED_KEYS))
def test_a_search_key_the_runs_do_not_read_is_refused_not_ignored(tmp_path, monkeypatch, top):
    """``meta.iterations`` (read by harness meta-train), ``seed`` (set per trial from sweep.seeds) and
    every other experiment-level key: a trial could not change them, so searching one exits 2."""
    monkeypatch.chdir(tmp_path)
    key = f"{top}.iterations" if top == "meta" else top
    space = {key: {"type": "int", "low": 1, "high": 3}}
    result = runner.invoke(app, ["sweep", str(sweep_file(tmp_path, space=space)), "--set", TINY])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"sweep.space.{key}: {top!r} belongs to the experiment file" in lines[0]
    assert not (tmp_path / "optuna-journal").exists()
