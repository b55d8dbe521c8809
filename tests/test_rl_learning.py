"""The weight-changing paradigms on the real base: what they learn, forget and cost (slow)."""

import mlflow
import pytest

from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.tracking import Tracker
from tests.conftest import SMOKE

pytestmark = pytest.mark.slow


def run(tracking_uri, overrides: list[str]):
    [result] = run_experiment(load_experiment(SMOKE, overrides), Tracker(tracking_uri), progress=False)
    return result.run_id


def history(tracking_uri, run_id, metric):
    client = mlflow.MlflowClient(tracking_uri)
    return [(m.step, m.value) for m in client.get_metric_history(run_id, metric)]


def test_adapter_grpo_learns_the_hidden_format_within_the_default_budget(tracking_uri, real_base):
    run_id = run(
        tracking_uri,
        [
            "task.suite=preferences",
            "paradigm.name=adapter",
            "algorithm.name=grpo",
            "budget.feedback_events=800",  # the default budget
            "evaluation.every=100",
            "task.batch_size=4",
        ],
    )
    compliance = history(tracking_uri, run_id, "eval/format_compliance")
    assert compliance[0][1] <= 0.5  # the base's chance level: a format picked at random
    assert compliance[-1][1] >= 0.8
    artifacts = {a.path for a in mlflow.MlflowClient(tracking_uri).list_artifacts(run_id, "state/adapter")}
    assert "state/adapter/adapter_model.safetensors" in artifacts


def test_a_higher_search_cost_weight_lowers_searching(tracking_uri, real_base):
    common = [
        "task.suite=search_or_answer",
        "paradigm.name=adapter",
        "algorithm.name=grpo",
        "budget.feedback_events=400",
        "evaluation.every=200",
        "task.batch_size=4",
    ]
    cheap = run(tracking_uri, [*common, "reward.weights.search_cost=0.0"])
    costly = run(tracking_uri, [*common, "reward.weights.search_cost=1.5"])
    searches = {
        name: history(tracking_uri, run_id, "eval/search_calls_per_query")[-1][1]
        for name, run_id in (("cheap", cheap), ("costly", costly))
    }
    assert searches["costly"] < searches["cheap"]


def test_full_ft_and_adapter_log_forgetting_and_kl_on_the_same_steps(tracking_uri, real_base):
    common = [
        "task.suite=preferences",
        "algorithm.name=grpo",
        "budget.feedback_events=192",
        "evaluation.every=64",
        "task.batch_size=4",
    ]
    full = run(tracking_uri, [*common, "paradigm.name=full_ft"])
    adapter = run(tracking_uri, [*common, "paradigm.name=adapter"])
    for metric in ("eval/forgetting", "eval/kl_to_base", "eval/general_accuracy"):
        assert [s for s, _ in history(tracking_uri, full, metric)] == [
            s for s, _ in history(tracking_uri, adapter, metric)
        ]
    assert history(tracking_uri, full, "eval/kl_to_base")[-1][1] > 0
    client = mlflow.MlflowClient(tracking_uri)
    full_storage = client.get_run(full).data.metrics["cost/storage_bytes"]
    adapter_storage = client.get_run(adapter).data.metrics["cost/storage_bytes"]
    assert adapter_storage < full_storage / 2
