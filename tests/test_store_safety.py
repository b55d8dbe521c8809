"""The MLflow store survives what researchers do to it: first runs started together, runs killed by
the kernel, stores side by side, and stores that are not there. Real processes, a real SQLite store."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from experiments.tracking import PROBE_SECONDS
from tests.conftest import SMOKE, TINY
from tests.test_sweep import harness, wait_for

QUICK = ["--set", TINY, "--set", "budget.feedback_events=4", "--set", "evaluation.every=4"]
QUICK += ["--set", "evaluation.general_items=4", "--quiet"]


def env_without_store() -> dict[str, str]:
    """The harness's default store (sqlite:///mlflow.db in the working directory), offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HARNESS_TRACKING_URI", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def runs_of(uri: str, experiment: str = "smoke") -> list:
    """The experiment's runs; [] while the SQLite store does not exist (this never creates it: a
    client opening a missing store builds it in place, racing the harness doing the same)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


@pytest.mark.timeout(600)
def test_eight_first_runs_at_once_in_a_new_directory_all_succeed(tmp_path, tiny_base):
    """They race to create mlflow.db: before, one or all crashed, once leaving it half set up."""
    processes = [
        subprocess.Popen(
            harness("run", str(SMOKE), *QUICK),
            cwd=tmp_path,
            env=env_without_store(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = [(p.wait(timeout=540), p.stderr.read()) for p in processes]
    assert [code for code, _ in results] == [0] * 8, [err[-1500:] for code, err in results if code]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = runs_of(uri)
    assert len(runs) == 16 and {r.info.status for r in runs} == {"FINISHED"}  # 8 parents, 8 children
    assert not list(tmp_path.glob(".mlflow.db.*.creating"))  # no scratch store left behind
    again = subprocess.run(
        harness("run", str(SMOKE), *QUICK), cwd=tmp_path, env=env_without_store(), timeout=300
    )
    assert again.returncode == 0


@pytest.mark.timeout(600)
def test_a_run_killed_by_sigkill_is_marked_failed_by_the_next_invocation(tracking_uri, tmp_path, tiny_base):
    """SIGKILL (or the OOM killer) leaves its runs RUNNING; the next run on the experiment fails them."""
    env = {**env_without_store(), "HARNESS_TRACKING_URI": tracking_uri}
    long_run = ["--set", TINY, "--set", "budget.feedback_events=100000", "--quiet"]
    process = subprocess.Popen(harness("run", str(SMOKE), *long_run), cwd=tmp_path, env=env)

    def child_running():
        return [r for r in runs_of(tracking_uri) if "mlflow.parentRunId" in r.data.tags]

    try:
        wait_for(child_running, 240, "a running child run", process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert {r.info.status for r in runs_of(tracking_uri)} == {"RUNNING"}  # what the kernel leaves

    done = subprocess.run(harness("run", str(SMOKE), *QUICK), cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0
    runs = runs_of(tracking_uri)
    orphans = [r for r in runs if r.data.tags.get("process.pid") == str(process.pid)]
    assert len(orphans) == 2 and {r.info.status for r in orphans} == {"FAILED"}
    assert all(r.data.tags["error"].startswith("orphaned: its process") for r in orphans)
    assert {r.info.status for r in runs if r not in orphans} == {"FINISHED"}


def test_artifacts_live_beside_their_sqlite_store(tmp_path, tiny_base):
    """Two stores never share an artifact folder, and nothing goes to ./mlruns where the command ran."""
    workdir, stores = tmp_path / "work", tmp_path / "stores"
    workdir.mkdir()
    stores.mkdir()
    for name in ("a.db", "b.db"):
        uri = f"sqlite:///{stores / name}"
        done = subprocess.run(
            harness("run", str(SMOKE), *QUICK, "--tracking-uri", uri),
            cwd=workdir,
            env=env_without_store(),
            timeout=300,
        )
        assert done.returncode == 0
        for run in runs_of(uri):
            assert run.info.artifact_uri.startswith((stores / f"{name}-artifacts" / "smoke").as_uri())
        child = next(r for r in runs_of(uri) if "mlflow.parentRunId" in r.data.tags)
        assert "config.yaml" in {a.path for a in mlflow.MlflowClient(uri).list_artifacts(child.info.run_id)}
    assert not (workdir / "mlruns").exists()
    assert sorted(p.name for p in workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("http://127.0.0.1:9", "no MLflow server answers there"),
        ("notascheme://x", "not a tracking store MLflow can open"),
        ("sqlite:////no/such/folder/mlflow.db", "the folder /no/such/folder does not exist"),
        ("postgresql://user@127.0.0.1:9/db", "nothing answers at 127.0.0.1:9"),
    ],
)
def test_a_store_that_cannot_be_used_is_one_line_and_exit_2_within_seconds(tmp_path, uri, fragment):
    started = time.monotonic()
    done = subprocess.run(
        harness("run", str(SMOKE), *QUICK, "--tracking-uri", uri),
        cwd=tmp_path,
        env=env_without_store(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "--tracking-uri" in lines[0], done.stderr
    assert time.monotonic() - started < 60 + PROBE_SECONDS  # a hang guard, not a timing claim
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_from_run_leaves_no_temporary_folder(tracking_uri, tmp_path, tiny_base):
    env = {**env_without_store(), "HARNESS_TRACKING_URI": tracking_uri}
    assert (
        subprocess.run(harness("run", str(SMOKE), *QUICK), cwd=tmp_path, env=env, timeout=300).returncode == 0
    )
    child = next(r for r in runs_of(tracking_uri) if "mlflow.parentRunId" in r.data.tags)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    done = subprocess.run(
        harness("run", "--from-run", child.info.run_id, "--quiet"), cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0
    assert not [p for p in scratch.iterdir() if p.name.startswith(("harness-from-run-", "tmp"))]


def test_a_half_set_up_store_is_one_line_naming_the_fix(tmp_path):
    """A database an old crash left without MLflow's schema is refused untouched, never a 143-line
    traceback (and never migrated: another program may still be setting it up)."""
    import sqlite3

    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    os.utime(store, (time.time() - 3600, time.time() - 3600))  # left by a crash an hour ago
    before = store.read_bytes()
    done = subprocess.run(
        harness("run", str(SMOKE), *QUICK),
        cwd=tmp_path,
        env=env_without_store(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a complete MLflow store" in lines[0] and "move it away" in lines[0]
    assert store.read_bytes() == before


def test_a_store_another_program_is_setting_up_is_waited_for(tmp_path, tiny_base):
    """A client that creates the store in place (as MLflow does) while a run starts: the run waits for
    it instead of migrating it at the same time."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**env_without_store(), "HARNESS_TRACKING_URI": uri}
    run = subprocess.Popen(harness("run", str(SMOKE), *QUICK), cwd=tmp_path, env=env)
    mlflow.MlflowClient(uri).search_experiments()  # builds the store in place, racing the run
    assert run.wait(timeout=300) == 0
    assert {r.info.status for r in runs_of(uri)} == {"FINISHED"}


def test_names_of_unsafe_experiments_never_become_paths(tmp_path):
    """--set name=../../x used to write the sweep journal and the report outside their folders."""
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    done = subprocess.run(
        harness("run", str(SMOKE), *QUICK, "--set", "name=../../x"),
        cwd=nested,
        env=env_without_store(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "is not a safe name" in done.stderr
    report = subprocess.run(
        harness("report", "--experiment", "../../x"),
        cwd=nested,
        env=env_without_store(),
        capture_output=True,
        text=True,
    )
    assert report.returncode == 2 and "not a safe folder name" in report.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a", "a/b"]


def test_a_complete_store_left_with_a_hot_journal_by_a_killed_writer_is_used(tmp_path):
    """SIGKILL in the middle of a write leaves a rollback journal; the next command rolls it back and
    uses the store (the schema check read it read-only and refused it as half set up)."""
    import sqlite3

    from mlflow.store.db.utils import _get_latest_schema_revision

    from experiments.tracking import wait_for_sqlite_store

    store = tmp_path / "mlflow.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("INSERT INTO alembic_version VALUES (?)", (_get_latest_schema_revision(),))
        db.execute("CREATE TABLE filler (x BLOB)")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, time\n"
            f"db = sqlite3.connect({str(store)!r}, isolation_level=None)\n"
            "db.execute('PRAGMA cache_size=1')\n"  # spill to the file: the journal holds the old pages
            "db.execute('BEGIN')\n"
            "for _ in range(500): db.execute('INSERT INTO filler VALUES (randomblob(4000))')\n"
            "db.execute('UPDATE alembic_version SET version_num = version_num')\n"
            "print('writing', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert (tmp_path / "mlflow.db-journal").exists()  # the hot journal of the killed transaction
    os.utime(store, (time.time() - 3600, time.time() - 3600))  # not a store being set up right now
    wait_for_sqlite_store(f"sqlite:///{store}", "HARNESS_TRACKING_URI")  # raised ConfigError before
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM filler").fetchone() == (0,)  # rolled back
