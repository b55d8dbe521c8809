"""MLflow runs as one tidy pandas table, and its parquet export.

The tidy table has one row per run × metric × step and these columns, in this order:

- ``run_id``, ``run_name``, ``experiment`` (the MLflow experiment's name), ``status``
  (``FINISHED``, ``FAILED``, ``KILLED``, ``RUNNING``...), ``error`` (the run's ``error`` tag);
- the contract tags ``paradigm``, ``algorithm``, ``task``, ``seed``, ``config_hash``, ``backbone``
  and the sweep tags ``sweep``, ``trial`` (all strings; an absent tag is ``""``);
- ``param.<dotted key>`` for every param any run logged (strings as logged; missing is NA),
  sorted by key;
- ``metric``, ``step`` (feedback events consumed, nullable ``Int64``), ``value`` (float).

Only child runs that carry a ``paradigm`` tag are rows: parent runs (``kind=experiment``), report
runs (``kind=report``) and meta-training runs (``kind=meta``: they produce an adapter start, they
are not evaluated on a user) are not. A run that logged no metric at all (a run that failed
early) still appears once, with ``metric``, ``step`` and ``value`` missing, so that reports can
count and list it. When a metric was logged twice at one step, the later value is kept.
Rows are sorted by experiment, run name, run id, metric and step, whatever order the store
returns them in.

``table.attrs["experiment_configs"]`` maps each experiment name to the distinct
``experiment.yaml`` artifacts of its parent runs: ``[{"source": ..., "text": ...}]``, sorted by
text. The parquet export keeps it (pandas stores ``attrs`` in the parquet metadata).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from analysis.names import CONTRACT_TAGS, ERROR_TAG, KIND_TAG, PARAM_PREFIX, SWEEP_TAGS

TRACKING_URI_ENV = "HARNESS_TRACKING_URI"
EXPERIMENT_CONFIG_ARTIFACT = "experiment.yaml"
CONFIGS_ATTR = "experiment_configs"
RUN_COLUMNS = ("run_id", "run_name", "experiment", "status", ERROR_TAG, *CONTRACT_TAGS, *SWEEP_TAGS)
METRIC_COLUMNS = ("metric", "step", "value")
SORT_COLUMNS = ["experiment", "run_name", "run_id", "metric", "step"]
_PAGE_SIZE = 1000
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def resolve_tracking_uri(explicit: str | None = None) -> str | None:
    """``explicit``, else ``$HARNESS_TRACKING_URI``, else None (MLflow's own default store)."""
    return explicit or os.environ.get(TRACKING_URI_ENV) or None


def load_runs(experiment_names: Sequence[str], tracking_uri: str | None = None) -> pd.DataFrame:
    """The tidy table (see the module docstring) of every child run of the named experiments.

    Raises ``ValueError`` naming the experiment when one does not exist in the store.
    """
    client = mlflow.MlflowClient(resolve_tracking_uri(tracking_uri))
    rows: list[dict] = []
    configs: dict[str, list[dict[str, str]]] = {}
    for name in experiment_names:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            known = sorted(e.name for e in client.search_experiments())
            raise ValueError(f"no MLflow experiment named {name!r}; known experiments: {', '.join(known)}")
        runs = _search_all(client, experiment.experiment_id)
        parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "experiment"]
        configs[name] = _experiment_configs(client, parents)
        for run in runs:
            if _is_child(run):
                rows += _run_rows(client, run, name)
    return tidy_table(rows, configs)


def load_table(
    experiment_names: Sequence[str], tracking_uri: str | None = None, parquet: Path | str | None = None
) -> pd.DataFrame:
    """The tidy table of the named experiments: from the MLflow store (:func:`load_runs`), or, with
    ``parquet``, from an export (:func:`load_parquet`) keeping those experiments (all when none is
    named). The one way analysis reads runs.

    Raises ``ValueError`` naming an experiment missing from the store or the export.
    """
    if parquet is None:
        return load_runs(experiment_names, tracking_uri)
    table = load_parquet(parquet)
    if not experiment_names:
        return table
    missing = sorted(set(experiment_names) - set(table["experiment"]))
    if missing:
        raise ValueError(
            f"parquet {parquet} holds no runs of experiment(s) {', '.join(missing)}; "
            f"it holds {', '.join(sorted(set(table['experiment'])))}"
        )
    kept = table[table["experiment"].isin(experiment_names)].reset_index(drop=True)
    kept.attrs = table.attrs
    return kept


def tidy_table(rows: Iterable[dict], configs: dict[str, list[dict[str, str]]] | None = None) -> pd.DataFrame:
    """Rows (dicts with the run columns, ``param.*`` keys and the metric columns) as the sorted tidy table."""
    frame = pd.DataFrame(list(rows))
    for column in (*RUN_COLUMNS, *METRIC_COLUMNS):
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="float64" if column == "value" else "str")
    params = sorted(c for c in frame.columns if c.startswith(PARAM_PREFIX))
    frame = frame[[*RUN_COLUMNS, *params, *METRIC_COLUMNS]]
    for column in (*RUN_COLUMNS, *params, "metric"):
        frame[column] = frame[column].astype("str")
    frame[list(RUN_COLUMNS)] = frame[list(RUN_COLUMNS)].fillna("")
    frame["step"] = frame["step"].astype("Int64")
    frame["value"] = frame["value"].astype("float64")
    frame = frame.sort_values(SORT_COLUMNS, kind="mergesort", na_position="first").reset_index(drop=True)
    frame.attrs[CONFIGS_ATTR] = configs or {}
    return frame


def save_parquet(table: pd.DataFrame, path: Path | str) -> Path:
    """Write the tidy table (with its ``attrs``) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)
    return path


def load_parquet(path: Path | str) -> pd.DataFrame:
    """Read a table written by :func:`save_parquet`: equal to the saved one, ``attrs`` included."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"parquet file {path} does not exist; export one with analysis.load.save_parquet")
    table = pd.read_parquet(path)
    table.attrs.setdefault(CONFIGS_ATTR, {})
    return table


def _search_all(client: mlflow.MlflowClient, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE_SIZE, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


#: ``kind`` tags of runs that are not an evaluated run of a paradigm on a user.
NOT_EVALUATED_KINDS = ("experiment", "report", "meta")


def _is_child(run: Run) -> bool:
    tags = run.data.tags
    return "paradigm" in tags and tags.get(KIND_TAG) not in NOT_EVALUATED_KINDS


def _run_rows(client: mlflow.MlflowClient, run: Run, experiment: str) -> list[dict]:
    tags = run.data.tags
    base = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name or "",
        "experiment": experiment,
        "status": run.info.status,
        **{tag: tags.get(tag, "") for tag in (ERROR_TAG, *CONTRACT_TAGS, *SWEEP_TAGS)},
        **{f"{PARAM_PREFIX}{key}": value for key, value in run.data.params.items()},
    }
    rows = []
    for metric in sorted(run.data.metrics):
        latest: dict[int, tuple[int, float]] = {}
        for entry in client.get_metric_history(run.info.run_id, metric):
            previous = latest.get(entry.step)
            if previous is None or entry.timestamp >= previous[0]:
                latest[entry.step] = (entry.timestamp, entry.value)
        rows += [
            {**base, "metric": metric, "step": step, "value": value}
            for step, (_, value) in sorted(latest.items())
        ]
    return rows or [{**base, "metric": None, "step": None, "value": float("nan")}]


def _experiment_configs(client: mlflow.MlflowClient, parents: list[Run]) -> list[dict[str, str]]:
    """The distinct ``experiment.yaml`` texts of the parent runs, each with the runs it came from."""
    sources: dict[str, list[str]] = {}
    for parent in parents:
        text = _read_artifact(client, parent.info.run_id, EXPERIMENT_CONFIG_ARTIFACT)
        if text is not None:
            sources.setdefault(text, []).append(parent.info.run_name or parent.info.run_id)
    return [
        {"source": f"{EXPERIMENT_CONFIG_ARTIFACT} of parent run(s) {', '.join(sorted(names))}", "text": text}
        for text, names in sorted(sources.items())
    ]


def _read_artifact(client: mlflow.MlflowClient, run_id: str, path: str) -> str | None:
    try:
        if path not in {a.path for a in client.list_artifacts(run_id)}:
            return None
        with tempfile.TemporaryDirectory() as scratch, _no_progress_bar():
            return Path(client.download_artifacts(run_id, path, scratch)).read_text(encoding="utf-8")
    except (MlflowException, OSError):
        return None


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """Silence MLflow's download progress bar (one per artifact read) for the duration."""
    previous = os.environ.get(_PROGRESS_BAR_ENV)
    os.environ[_PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS_BAR_ENV, None)
        else:
            os.environ[_PROGRESS_BAR_ENV] = previous
