"""The distributed path for real: two sweep workers, and two grid workers (``harness run --storage``),
each pair on one PostgreSQL study and one MLflow server on a PostgreSQL backend, started with the
README's own ``mlflow server`` command.

`.ci/run` starts a throwaway PostgreSQL on 127.0.0.1 and exports its URL as
``HARNESS_TEST_POSTGRES``; this test skips only when that is unset or the server is unreachable.
Each worker is a separate `harness sweep FILE --storage postgresql://... --tracking-uri http://...`
process, exactly as on two machines.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from experiments.sweep import rdb_url
from tests.conftest import ROOT
from tests.test_sweep import SMALL, harness, subprocess_env, sweep_file

README = ROOT / "README.md"

POSTGRES_ENV = "HARNESS_TEST_POSTGRES"


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run starts a throwaway PostgreSQL and sets it)")
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(rdb_url(url), connect_args={"connect_timeout": 5})
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except Exception as error:
        pytest.skip(f"PostgreSQL at {url} is unreachable: {str(error).splitlines()[0]}")
    return url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def readme_mlflow_server() -> list[str]:
    """The README's ``mlflow server ...`` command ('Several machines'), split as a shell would."""
    lines = [line for line in README.read_text().splitlines() if line.startswith("mlflow server ")]
    assert len(lines) == 1, f"README.md should hold one 'mlflow server' command, found {lines}"
    return shlex.split(lines[0])


def as_the_readme_says(database_url: str, port: int) -> list[str]:
    """The README's command, run by this environment's Python, on this test's database (keeping the
    README's driver) and on 127.0.0.1:``port`` (the README's 0.0.0.0 listens on every interface)."""
    args = readme_mlflow_server()[1:]
    at = args.index("--backend-store-uri") + 1
    scheme = args[at].split("://", 1)[0]  # postgresql+psycopg2: the driver the README names
    args[at] = f"{scheme}://{database_url.split('://', 1)[1]}"
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = str(port)
    return [sys.executable, "-m", "mlflow", *args]


@pytest.fixture
def mlflow_database(postgres_url):
    """A fresh database beside the test's, for the MLflow server (the README's ``createdb mlflow``);
    its URL. Dropped afterwards."""
    import sqlalchemy

    name = f"mlflow_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(rdb_url(postgres_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"create database {name}"))
    try:
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"drop database if exists {name} with (force)"))
        engine.dispose()


@pytest.fixture
def mlflow_server(tmp_path, mlflow_database):
    """An ``mlflow server`` on a PostgreSQL backend, started with the README's command; its URL."""
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115 (closed below)
    # artifacts go where the README's command puts them: ./mlartifacts of the server's directory
    server = subprocess.Popen(
        as_the_readme_says(mlflow_database, port), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a loaded machine took 140 s to start it
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"mlflow server did not answer: {(tmp_path / 'mlflow-server.log').read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def run_on_two_machines(
    tmp_path: Path, command: list[str], tracking_uri: str, timeout: float
) -> tuple[list[Path], list[subprocess.Popen], list[tuple[str, str]]]:
    """``command`` started at once in two folders (two "machines" sharing only the storage and the
    MLflow server); (the folders, the processes, their (stdout, stderr)) once both have exited."""
    env = subprocess_env(tracking_uri)
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    workers = []
    for machine in machines:
        machine.mkdir()
        workers.append(
            subprocess.Popen(
                command, cwd=machine, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return machines, workers, [worker.communicate(timeout=timeout) for worker in workers]


def test_the_readme_names_a_driver_the_project_installs():
    """The README's MLflow URL works with what is installed (a bare postgresql:// means psycopg 3 to
    SQLAlchemy 2.1, which the project does not install)."""
    import sqlalchemy

    command = readme_mlflow_server()
    sqlalchemy.create_engine(
        command[command.index("--backend-store-uri") + 1]
    )  # loads the driver's DBAPI module; no connection is made


@pytest.mark.timeout(400)
def test_two_workers_share_one_postgres_study_and_one_mlflow_server(
    tmp_path, postgres_url, mlflow_database, mlflow_server, tiny_base
):
    study_name = f"pg-{uuid.uuid4().hex[:8]}"
    file = sweep_file(tmp_path, n_trials=6, seeds=[0], study_name=study_name)
    command = harness("sweep", str(file), *SMALL, "--storage", postgres_url, "--tracking-uri", mlflow_server)
    machines, workers, outputs = run_on_two_machines(tmp_path, command, mlflow_server, timeout=360)
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
        assert f"best trial of study '{study_name}'" in out  # each machine ends with the result
    assert not any((machine / "optuna-journal").exists() for machine in machines)

    study = optuna.load_study(study_name=study_name, storage=rdb_url(postgres_url))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert all(t.user_attrs.get("surplus") for t in failed), [(t.number, t.user_attrs) for t in failed]
    pids = Counter(t.user_attrs["worker_pid"] for t in complete)
    assert set(pids) == {w.pid for w in workers}  # both machines finished trials

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tsweep")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    finished = Counter(int(c.data.tags["trial"]) for c in children if c.info.status == "FINISHED")
    assert finished == Counter({t.number: 1 for t in complete})
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"best_trial.json", "sweep.yaml"} <= artifacts
    import sqlalchemy

    engine = sqlalchemy.create_engine(rdb_url(mlflow_database))  # the server kept them in PostgreSQL
    with engine.connect() as connection:
        stored = set(connection.execute(sqlalchemy.text("select run_uuid from runs")).scalars())
    engine.dispose()
    assert {r.info.run_id for r in runs} <= stored
    print(f"trials per worker process: {dict(pids)}")


@pytest.mark.timeout(500)
def test_two_machines_run_one_grid_on_postgres_and_one_mlflow_server(
    tmp_path, postgres_url, mlflow_database, mlflow_server, tiny_base
):
    """`harness run FILE --storage postgresql://...` on two machines: one grid study, each run once."""
    from experiments.sweep.grid import run_index
    from tests.test_grid_workers import FORMATS, SEEDS, grid_file

    name = f"pg-grid-{uuid.uuid4().hex[:8]}"
    file = grid_file(tmp_path, name)
    command = harness(
        "run", str(file), *SMALL, "--set", "budget.feedback_events=32", "--storage", postgres_url,
        "--tracking-uri", mlflow_server,
    )  # fmt: skip
    machines, workers, outputs = run_on_two_machines(tmp_path, command, mlflow_server, timeout=460)
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-2000:]
        assert "6/6 runs finished" in out  # each machine ends with the grid's results
    assert not any((machine / "optuna-journal").exists() for machine in machines)

    storage = rdb_url(postgres_url)
    [study_name] = [s for s in optuna.get_all_study_names(storage) if s.startswith(f"{name}-grid-")]
    study = optuna.load_study(study_name=study_name, storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(run_index(t) for t in complete) == list(range(6))
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert all("duplicate_of" in t.user_attrs for t in failed), [(t.number, t.user_attrs) for t in failed]
    pids = Counter(t.user_attrs["worker_pid"] for t in complete)
    assert set(pids) == {w.pid for w in workers}  # both machines ran runs

    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "experiment"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    pairs = Counter(
        (float(c.data.params["reward.weights.format"]), int(c.data.tags["seed"]))
        for c in children
        if c.info.status == "FINISHED"
    )
    assert pairs == Counter({(value, seed): 1 for value in FORMATS for seed in SEEDS})
    import sqlalchemy

    engine = sqlalchemy.create_engine(rdb_url(mlflow_database))  # the server kept them in PostgreSQL
    with engine.connect() as connection:
        stored = set(connection.execute(sqlalchemy.text("select run_uuid from runs")).scalars())
    engine.dispose()
    assert {r.info.run_id for r in runs} <= stored
    print(f"grid runs per machine: {dict(pids)}")
