"""The one module that writes to MLflow.

Layout: one MLflow experiment per experiment file name; one parent run per invocation; one
nested child run per (grid point, seed), tagged with DESIGN.md's contract tags, with the
resolved config flattened into params and stored as ``config.yaml``. Metrics are buffered and
sent in batches. A run that raises is marked FAILED with the error in the ``error`` tag.

The store is checked before anything is written (``Tracker``): a URI of a kind MLflow cannot open,
a SQLite file in a missing folder, or a server or database that does not answer within a few
seconds is a ``ConfigError`` naming the URI and the fix. A new SQLite store is created whole
under a file lock and renamed into place, so first runs started together in a new directory all
find a complete store (never one half set up), and its artifacts live beside it
(``mlflow.db`` -> ``mlflow.db-artifacts/<experiment>/``), so two stores never share an artifact
folder. Every run records the host and process that write it; a run still ``RUNNING`` whose
process is gone (SIGKILL, the out-of-memory killer) is marked ``FAILED`` with that reason by the
next invocation that writes to its experiment.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psutil
import yaml
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from experiments.errors import ConfigError, describe_error
from paradigms.backbone_files import file_lock

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRACKING_URI_ENV = "HARNESS_TRACKING_URI"
#: Stores MLflow opens, by URI scheme (SQLAlchemy schemes may name a driver: postgresql+psycopg2).
STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks")
#: Seconds a server or database has to answer the reachability probe.
PROBE_SECONDS = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
#: A SQLite store whose schema is incomplete but which changed this recently is being set up by
#: another program (an MLflow client, ``mlflow ui``): wait for it rather than migrate it at once.
SETUP_QUIET_SECONDS = 10.0
SETUP_WAIT_SECONDS = 60.0
#: Which process writes a run: an orphan is a RUNNING run of this host whose process is gone.
HOST_TAG, PID_TAG, PROCESS_START_TAG = "process.host", "process.pid", "process.start_time"
_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "mlflow",
    "optuna",
    "faiss-cpu",
    "sentence-transformers",
    "pandas",
    "numpy",
    "paradigm-harness",
)
MLFLOW_SOURCE_GIT_COMMIT = "mlflow.source.git.commit"
#: The experiment tag MLflow 3's UI reads to choose an experiment's page; without it an experiment
#: with no traces opens on the GenAI page (traces, "Detect issues") instead of its runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"  # the UI's "Model training": runs, charts, evaluation
#: A run's readable group (``adapter/grpo``, ``memory/search_cost=0.5``): one per ``config_hash``.
GROUP_TAG = "group"
#: The MLflow UI's shared views are experiment tags with this prefix (what its "Share" button
#: writes); ``?viewStateShareKey=<key>`` opens one. The harness's view, ``seeds``, groups the runs
#: by the ``group`` tag (each group's seeds under it, charts averaged over them), shows every group
#: in the charts (the UI's default shows the first 10), lists groups in the order they ran, and
#: widens the run-name column so names show their seed.
SHARED_VIEW_TAG = "mlflow.sharedViewState."
SEEDS_VIEW = "seeds"
SEEDS_VIEW_STATE = {
    "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}]},
    "runsHiddenMode": "SHOW_ALL",
    "orderByKey": "attributes.start_time",
    "orderByAsc": True,
    # the UI applies a width only to a column named in columnOrder: the checkbox column, then the name
    "columnOrder": ["0", "attributes.`Run Name`"],
    "columnWidths": {"attributes.`Run Name`": 300},
}
#: ``run``: ``cost/peak_rss_bytes`` is the peak while the run ran; ``process``: since its process started.
PEAK_RSS_SCOPE_TAG = "peak_rss_scope"
_MAX_BATCH = 1000
_PARAM_LIMIT = 6000


def tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``, else ``$HARNESS_TRACKING_URI``, else ``sqlite:///mlflow.db`` (working dir)."""
    return explicit or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def _uri_label(uri: str, explicit: str | None) -> str:
    """How the user gave the URI, for error messages."""
    if explicit:
        return f"--tracking-uri {_redact(uri)}"
    if os.environ.get(TRACKING_URI_ENV):
        return f"{TRACKING_URI_ENV}={_redact(uri)}"
    return f"the default store {uri}"


def _redact(uri: str) -> str:
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory); None otherwise."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:") :]
    if not rest.startswith("///"):
        return None
    path = unquote(rest[3:].split("?", 1)[0])
    return Path(path) if path and path != ":memory:" else None


def artifact_root(uri: str) -> Path | None:
    """Where the artifacts of a SQLite store live: beside it (``mlflow.db`` -> ``mlflow.db-artifacts``).

    None for other stores (a server keeps its own artifact root; a database uses MLflow's default).
    """
    path = sqlite_path(uri)
    return None if path is None else path.resolve().parent / f"{path.name}-artifacts"


def check_tracking_uri(uri: str, label: str | None = None) -> None:
    """Raise a ConfigError when ``uri`` cannot be a store here: unknown scheme, SQLite file in a missing
    folder, or a server or database that does not answer within ``PROBE_SECONDS``."""
    label = label or f"--tracking-uri {_redact(uri)}"
    if label.startswith("--tracking-uri"):
        fix = f"leave it out to use the local store ({DEFAULT_TRACKING_URI})"
    else:
        fix = "pass --tracking-uri with another store"
    try:
        parts = urlsplit(uri)
    except ValueError as error:
        raise ConfigError(f"{label}: not a URI ({error}); {fix}") from None
    scheme = parts.scheme.split("+", 1)[0].lower()
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            f"{label}: not a tracking store MLflow can open; use sqlite:///PATH.db (a local file), "
            f"http(s)://HOST:PORT (an MLflow server) or postgresql://USER@HOST/DB, or {fix}"
        )
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None:
            raise ConfigError(
                f"{label}: write a SQLite store as sqlite:///relative.db or sqlite:////abs/path.db"
            )
        folder = path.resolve().parent
        if not folder.is_dir():
            raise ConfigError(
                f"{label}: the folder {folder} does not exist; create it or choose another path"
            )
        if path.exists() and not path.is_file():
            raise ConfigError(f"{label}: {path} is not a file; choose a file path for the store")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{label}: the folder {folder} is not writable; choose another path")
        return
    if scheme in ("file", "databricks"):
        return
    host, port = parts.hostname, parts.port if _valid_port(parts) else None
    if not host:
        raise ConfigError(f"{label}: no host in the URI; write it like {scheme}://HOST:PORT")
    port = port or _DEFAULT_PORTS.get(scheme)
    if scheme in ("http", "https"):
        _probe_http(uri, label, fix)
    else:
        _probe_tcp(host, port, label, f"start the database or {fix}")


def _valid_port(parts) -> bool:
    try:
        return parts.port is not None
    except ValueError:
        return False


def _probe_tcp(host: str, port: int, label: str, fix: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{label}: nothing answers at {host}:{port} ({reason}); {fix}") from None


def _probe_http(uri: str, label: str, fix: str) -> None:
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=PROBE_SECONDS):
            return
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise ConfigError(
                f"{label}: a server answers but is not an MLflow tracking server (GET /health: 404); "
                f"check the URI or {fix}"
            ) from None
        return  # it answers (e.g. 401 behind authentication): MLflow's client reports the rest
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        reason = getattr(reason, "strerror", None) or str(reason)
        raise ConfigError(
            f"{label}: no MLflow server answers there ({reason}); start one "
            f"(mlflow server --host 127.0.0.1 --port PORT) or {fix}"
        ) from None


def ensure_sqlite_store(uri: str) -> None:
    """Create the SQLite store of ``uri`` if missing: built whole under a lock, then renamed into place.

    MLflow builds a new database's tables on first open; two processes doing that at once race
    (one crashes, or the file is left half set up for good). Here the first process builds it in
    a scratch file and renames it, the others wait on the lock and find a complete store.
    """
    path = sqlite_path(uri)
    if path is None or (path.exists() and path.stat().st_size > 0):
        return
    with file_lock(path):  # .<name>.lock beside the store
        if path.exists() and path.stat().st_size > 0:
            return  # another process created it while we waited
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        scratch = path.with_name(f".{path.name}.{os.getpid()}.creating")
        scratch_uri = f"sqlite:///{scratch.resolve()}"
        try:
            store = SqlAlchemyStore(scratch_uri, artifact_root(uri).as_uri())
            store.engine.dispose()
            SqlAlchemyStore._engine_map.pop(scratch_uri, None)
            os.replace(scratch, path)
        finally:
            scratch.unlink(missing_ok=True)


def git_state(directory: Path | None = None) -> dict[str, str]:
    """``{"commit": sha, "dirty": "true"|"false"}`` of the project checkout (``unknown`` outside git)."""
    here = directory or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        return {"commit": commit, "dirty": "true" if status.strip() else "false"}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown"}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo`` on Linux): BLAS libraries pick their code by it, so two
    hosts of one instruction set can still round differently (``paradigms.cpu_kernels``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def provenance_tags() -> dict[str, str]:
    """Git commit, dirtiness, package versions and the processor, as tags every run carries."""
    git = git_state()
    tags = {MLFLOW_SOURCE_GIT_COMMIT: git["commit"], "git_dirty": git["dirty"], "cpu_model": cpu_model()}
    tags.update({f"version.{name}": version for name, version in package_versions().items()})
    return tags


def _schema_revision(path: Path) -> str | None:
    """The SQLite store's MLflow schema revision (None: none recorded), read by a query that changes nothing.

    The connection may write (``mode=rw``, which never creates the file): a process killed in the
    middle of a write leaves a hot journal, which SQLite rolls back when the next connection that can
    write opens the file, as MLflow's own would. A read-only connection cannot, and failed ("attempt to
    write a readonly database") as if the store were not set up, refusing a complete store after a
    crash.
    """
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def wait_for_sqlite_store(uri: str, label: str) -> None:
    """Return once the existing SQLite store of ``uri`` has MLflow's current schema.

    Opening a store whose schema is incomplete makes MLflow migrate it; if another program is
    still setting it up in place (an MLflow client or ``mlflow ui`` that got there first), two
    migrations at once break it. So a store that is incomplete but changing is waited for (up to
    ``SETUP_WAIT_SECONDS``); one that stays incomplete, or has another MLflow version's schema, is a
    ConfigError naming the fix, and is never touched.
    """
    path = sqlite_path(uri)
    if path is None or not path.exists() or path.stat().st_size == 0:
        return
    from mlflow.store.db.utils import _get_latest_schema_revision

    head = _get_latest_schema_revision()
    deadline = time.monotonic() + SETUP_WAIT_SECONDS
    while (revision := _schema_revision(path)) != head:
        settling = time.time() - path.stat().st_mtime < SETUP_QUIET_SECONDS
        if not settling or time.monotonic() > deadline:
            if revision is None:
                raise ConfigError(
                    f"{label}: {path} is not a complete MLflow store (an earlier crash left it half set "
                    f"up?); move it away and run again"
                )
            raise ConfigError(
                f"{label}: {path} has another MLflow version's schema ({revision}, this one needs "
                f"{head}); back it up and run: mlflow db upgrade {uri}, or use another store"
            )
        time.sleep(0.5)


class TrackedRun:
    """A live MLflow run: buffered metrics, params, tags, artifacts, datasets and the final status."""

    def __init__(self, client: MlflowClient, run_id: str, name: str):
        self.client, self.run_id, self.name = client, run_id, name
        self._buffer: list[Metric] = []
        self.closed = False
        #: The status this process closed it with (None while open or when closed elsewhere).
        self.status: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue metrics at ``step`` (feedback events); they are sent in batches."""
        now = int(time.time() * 1000)
        self._buffer += [Metric(key, float(value), now, int(step)) for key, value in metrics.items()]
        if len(self._buffer) >= _MAX_BATCH:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:_MAX_BATCH], self._buffer[_MAX_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_dict(self, data: Any, artifact_file: str) -> None:
        """Write ``data`` as YAML or JSON (by extension) to the run's artifacts."""
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / Path(artifact_file).name
            if artifact_file.endswith((".yaml", ".yml")):
                path.write_text(yaml.safe_dump(data, sort_keys=False))
            else:
                path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
            self.log_artifact(path, str(Path(artifact_file).parent) if "/" in artifact_file else None)

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dataset(self, dataset, name: str, context: str) -> None:
        """Record a ``datasets.Dataset`` as a run input (``mlflow.log_input``), keyed by its fingerprint."""
        import mlflow.data

        entity = mlflow.data.from_huggingface(
            dataset, name=name, digest=dataset._fingerprint[:16]
        )._to_mlflow_entity()
        inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])]
        try:
            self.client.log_inputs(self.run_id, inputs)
        except MlflowException as error:
            # two workers starting runs on the same user at once both insert the dataset; the loser
            # of that race finds it the second time and only links it to its run
            if "UNIQUE constraint failed: datasets" not in str(error):
                raise
            self.client.log_inputs(self.run_id, inputs)

    def resume(self) -> TrackedRun:
        """Set a closed run back to RUNNING (a resumed sweep's parent) and accept writes again."""
        self.client.update_run(self.run_id, status="RUNNING")
        self.closed = False
        return self

    def delete(self) -> None:
        """Delete the run (a parent that lost the race to be a study's one parent)."""
        self.client.delete_run(self.run_id)
        self.closed = True

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """Flush and close the run as FINISHED, FAILED (``error`` becomes a tag) or KILLED."""
        if self.closed:
            return
        try:
            self.flush()
        finally:
            if error is not None:
                self.client.set_tag(self.run_id, "error", error[:5000])
            self.client.set_terminated(self.run_id, status)
            self.closed = True
            self.status = status


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | dict | bool) or value is None else str(value)
    return text[:_PARAM_LIMIT]


def _process_alive(pid: int, start_time: float) -> bool:
    """Whether process ``pid`` still runs and is the one that started at ``start_time`` (not a reuse)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and abs(process.create_time() - start_time) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell (another user's process): leave its runs alone


def _this_process() -> dict[str, str]:
    me = psutil.Process()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(me.pid),
        PROCESS_START_TAG: f"{me.create_time():.3f}",
    }


class Tracker:
    """Creates experiments and runs on one tracking store (checked, and created if new, at construction).

    Raises ``ConfigError`` when the store cannot be used (see ``check_tracking_uri``).
    """

    def __init__(self, uri: str | None = None):
        self.uri = tracking_uri(uri)
        label = _uri_label(self.uri, uri)
        check_tracking_uri(self.uri, label)
        try:
            ensure_sqlite_store(self.uri)
            wait_for_sqlite_store(self.uri, label)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)  # opens (and checks) the store now
        except ConfigError:
            raise
        except Exception as error:  # MLflow, SQLAlchemy or a driver: the store cannot be opened
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            raise ConfigError(
                f"{label}: MLflow cannot open this store ({type(error).__name__}: {first}); "
                f"if an earlier crash left it half set up, move it away and run again"
            ) from None
        self._artifacts = artifact_root(self.uri)
        self._swept: set[str] = set()
        #: Runs this tracker started, in order (the CLI reports which it closed on Ctrl-C).
        self.started: list[TrackedRun] = []

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (or restored from deleted) if needed.

        The experiment is tagged as model training (:data:`EXPERIMENT_KIND_TAG`) and carries the
        ``seeds`` view (:data:`SEEDS_VIEW_STATE`) that :func:`runs_page_url` opens; an experiment
        made earlier gets the kind if it has none and the view as this version defines it.
        Safe when several workers start at once: whoever loses the race to create it uses the
        winner's experiment.
        """
        tags = {
            EXPERIMENT_KIND_TAG: MODEL_TRAINING,
            SHARED_VIEW_TAG + SEEDS_VIEW: json.dumps(SEEDS_VIEW_STATE, sort_keys=True),
        }
        existing = self.client.get_experiment_by_name(name)
        if existing is None:
            try:
                return self.client.create_experiment(
                    name, artifact_location=self._artifact_location(name), tags=tags
                )
            except MlflowException:
                existing = self.client.get_experiment_by_name(name)
                if existing is None:  # the error was not a lost race
                    raise
        if existing.lifecycle_stage == "deleted":
            self.client.restore_experiment(existing.experiment_id)
        for key, value in tags.items():
            # a kind someone chose stays; the harness's own view follows this version's definition
            if key not in existing.tags or (key != EXPERIMENT_KIND_TAG and existing.tags[key] != value):
                self.client.set_experiment_tag(existing.experiment_id, key, value)
        return existing.experiment_id

    def _artifact_location(self, name: str) -> str | None:
        """``<store>-artifacts/<name>`` for a SQLite store (a digest when the name is no safe folder)."""
        if self._artifacts is None:
            return None
        folder = (
            name
            if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name)
            else ("experiment-" + hashlib.sha256(name.encode()).hexdigest()[:12])
        )
        return (self._artifacts / folder).as_uri()

    def close_orphans(self, experiment_id: str) -> list[str]:
        """Mark FAILED the RUNNING runs of ``experiment_id`` whose writing process on this host is gone.

        Such runs were left by a process killed without unwinding (SIGKILL, the out-of-memory
        killer). Runs of a sweep or of a grid study (``harness run --workers``) are left to its
        workers, which fail and retry a dead worker's trial themselves. Returns the names of the runs
        marked.
        """
        host = socket.gethostname()
        marked = []
        runs = self.client.search_runs(
            [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
        )
        for run in runs:
            tags = run.data.tags
            if "trial" in tags or "grid_study" in tags or tags.get("kind") == "sweep":
                continue
            try:
                pid, started = int(tags[PID_TAG]), float(tags[PROCESS_START_TAG])
            except (KeyError, ValueError):
                continue
            if _process_alive(pid, started):
                continue
            self.client.set_tag(
                run.info.run_id,
                "error",
                f"orphaned: its process ({pid} on {host}) ended without closing it (killed by SIGKILL "
                f"or the out-of-memory killer?); marked FAILED by the next harness invocation",
            )
            self.client.set_terminated(run.info.run_id, "FAILED")
            marked.append(run.info.run_name)
        return marked

    def start_run(
        self,
        experiment: str,
        name: str,
        tags: Mapping[str, Any] | None = None,
        parent: TrackedRun | None = None,
    ) -> TrackedRun:
        """A new run (nested under ``parent`` when given) carrying the provenance tags."""
        all_tags = {**provenance_tags(), **_this_process(), **(tags or {}), MLFLOW_RUN_NAME: name}
        if parent is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent.run_id
        experiment_id = self.experiment_id(experiment)
        if experiment_id not in self._swept:  # once per experiment and invocation
            self._swept.add(experiment_id)
            self.close_orphans(experiment_id)
        run = self.client.create_run(
            experiment_id, run_name=name, tags={k: str(v) for k, v in all_tags.items()}
        )
        tracked = TrackedRun(self.client, run.info.run_id, name)
        self.started.append(tracked)
        return tracked

    def start_config_run(
        self,
        experiment: str,
        config,
        group: str,
        parent: TrackedRun | None,
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> TrackedRun:
        """The run of one run config, as ``harness run``, a sweep's trial and a grid worker start it:
        named ``name`` (default ``config.run_name()``), tagged with :func:`child_tags` (the contract
        tags, ``group``) plus ``tags``, nested under ``parent``, the config flattened into params and
        stored whole as ``config.yaml``. The run exists (RUNNING) before those are logged: interrupted
        meanwhile (Ctrl-C, SIGTERM) it is closed KILLED, and FAILED on an error, before this raises, since
        the caller never gets it to close."""
        run = self.start_run(
            experiment,
            name or config.run_name(),
            tags={**child_tags(config, group), **(tags or {})},
            parent=parent,
        )
        try:
            run.log_params(config.flat())
            run.log_dict(config.model_dump(mode="json"), "config.yaml")
        except (KeyboardInterrupt, SystemExit):
            run.finish("KILLED", error="interrupted")
            raise
        except Exception as error:
            run.finish("FAILED", error=describe_error(error))
            raise
        return run

    def find_runs(self, experiment: str, filter_string: str = "") -> list:
        """Every run of ``experiment`` matching an MLflow ``filter_string`` (oldest first); [] when none."""
        existing = self.client.get_experiment_by_name(experiment)
        if existing is None:
            return []
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [existing.experiment_id],
                filter_string=filter_string,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def attach(self, run_id: str) -> TrackedRun:
        """A handle on an existing run, to log to it or to set its final status."""
        run = self.client.get_run(run_id)
        tracked = TrackedRun(self.client, run_id, run.info.run_name)
        tracked.closed = run.info.status != "RUNNING"
        return tracked


def runs_page_url(ui_url: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs, grouped by ``group`` (the ``seeds`` view).

    ``workflowType=machine_learning`` opens MLflow 3's "Model training" pages: since 3.17 the UI
    picks GenAI or Model training from this parameter or the browser's last choice (default
    GenAI), not from the experiment's kind tag.
    """
    return (
        f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={SEEDS_VIEW}"
    )


def group_labels(configs: Sequence) -> list[str]:
    """A readable name for each config's group of seeds, in order (the ``group`` tag).

    ``paradigm``, then ``/algorithm`` unless it is ``none``, then ``/key=value,...`` for the
    fields in which this paradigm and algorithm's configs differ (the seed aside), each key
    shortened to its shortest dotted suffix that is unique among those fields:
    ``["frozen", "memory/search_cost=0.1", "memory/search_cost=0.5", "adapter/grpo"]``. Configs
    that differ only by seed get the same label; configs with different labels differ.
    """
    flats = [{k: v for k, v in config.flat().items() if k != "seed"} for config in configs]
    heads = [
        config.paradigm.name + ("" if config.algorithm.name == "none" else f"/{config.algorithm.name}")
        for config in configs
    ]
    labels = []
    for head, flat in zip(heads, flats, strict=True):
        siblings = [f for h, f in zip(heads, flats, strict=True) if h == head]
        differing = sorted(
            k for k in set().union(*siblings) if len({json.dumps(f.get(k)) for f in siblings}) > 1
        )
        short = _short_keys(differing)
        variant = ",".join(f"{short[k]}={_param_value(flat.get(k))}" for k in differing)
        labels.append(f"{head}/{variant}" if variant else head)
    return labels


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix (whole segments) that no other key in ``keys`` ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            suffix = ".".join(parts[-size:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        short[key] = suffix
    return short


def child_tags(config, group: str) -> dict[str, str]:
    """Every tag a child run is created with: the contract tags, its ``group`` and ``peak_rss_scope``."""
    from experiments.peak_memory import peak_rss_scope

    return {**contract_tags(config), GROUP_TAG: group, PEAK_RSS_SCOPE_TAG: peak_rss_scope()}


def contract_tags(config) -> dict[str, str]:
    """The tags DESIGN.md promises on every child run, from its resolved config."""
    return {
        "paradigm": config.paradigm.name,
        "algorithm": config.algorithm.name,
        "task": config.task.suite,
        "seed": str(config.seed),
        "config_hash": config.config_hash(),
        "backbone": config.backbone,
    }
