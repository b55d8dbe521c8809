"""The one module that writes to MLflow.

Layout: one MLflow experiment per experiment file name; one parent run per invocation; one
nested child run per (grid point, seed), tagged with DESIGN.md's contract tags, with the
resolved config flattened into params and stored as ``config.yaml``. Metrics are buffered and
sent in batches. A run that raises is marked FAILED with the error in the ``error`` tag.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRACKING_URI_ENV = "HARNESS_TRACKING_URI"
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
_MAX_BATCH = 1000
_PARAM_LIMIT = 6000


def tracking_uri(explicit: str | None = None) -> str:
    """``--tracking-uri``, else ``$HARNESS_TRACKING_URI``, else ``sqlite:///mlflow.db`` (working dir)."""
    return explicit or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


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


def provenance_tags() -> dict[str, str]:
    """Git commit, dirtiness and package versions, as tags every run carries."""
    git = git_state()
    tags = {MLFLOW_SOURCE_GIT_COMMIT: git["commit"], "git_dirty": git["dirty"]}
    tags.update({f"version.{name}": version for name, version in package_versions().items()})
    return tags


class TrackedRun:
    """A live MLflow run: buffered metrics, params, tags, artifacts, datasets and the final status."""

    def __init__(self, client: MlflowClient, run_id: str, name: str):
        self.client, self.run_id, self.name = client, run_id, name
        self._buffer: list[Metric] = []
        self.closed = False

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


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | dict | bool) or value is None else str(value)
    return text[:_PARAM_LIMIT]


class Tracker:
    """Creates experiments and runs on one tracking store."""

    def __init__(self, uri: str | None = None):
        self.uri = tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (or restored from deleted) if needed.

        Safe when several workers start at once: whoever loses the race to create it uses the
        winner's experiment.
        """
        existing = self.client.get_experiment_by_name(name)
        if existing is None:
            try:
                return self.client.create_experiment(name)
            except MlflowException:
                existing = self.client.get_experiment_by_name(name)
                if existing is None:  # the error was not a lost race
                    raise
        if existing.lifecycle_stage == "deleted":
            self.client.restore_experiment(existing.experiment_id)
        return existing.experiment_id

    def start_run(
        self,
        experiment: str,
        name: str,
        tags: Mapping[str, Any] | None = None,
        parent: TrackedRun | None = None,
    ) -> TrackedRun:
        """A new run (nested under ``parent`` when given) carrying the provenance tags."""
        all_tags = {**provenance_tags(), **(tags or {}), MLFLOW_RUN_NAME: name}
        if parent is not None:
            all_tags[MLFLOW_PARENT_RUN_ID] = parent.run_id
        run = self.client.create_run(
            self.experiment_id(experiment), run_name=name, tags={k: str(v) for k, v in all_tags.items()}
        )
        return TrackedRun(self.client, run.info.run_id, name)

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
