"""Shared fixtures: a temporary MLflow store per test, the tiny builtin base, offline hub."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "experiments" / "smoke.yaml"
TINY = "backbone=builtin:tiny"


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store in a temp dir, also exported for subprocesses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("HARNESS_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """The seconds-long builtin base (same code path as the real one, not competent)."""
    from experiments.base import ensure_base

    return ensure_base("builtin:tiny", progress=False)


@pytest.fixture(scope="session")
def real_base() -> Path:
    """The real builtin base (built once per cache, minutes); only slow tests use it."""
    from experiments.base import ensure_base

    return ensure_base("builtin", progress=False)


@pytest.fixture(scope="session")
def oversearch_base() -> Path:
    """The real base with a needless-search habit on ``home`` questions (built once per cache, minutes)."""
    from experiments.base import ensure_base

    return ensure_base("builtin:oversearch", progress=False)


def metric_histories(client, run_id: str, ignore: set[str]) -> dict[str, list[tuple[int, float]]]:
    """Every metric of run ``run_id`` but those in ``ignore``, as its (step, value) history."""
    run = client.get_run(run_id)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
        if key not in ignore
    }
