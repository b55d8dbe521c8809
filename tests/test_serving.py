"""Serving cost at scale: hand-computed cells, and a report cell recomputed from the logged metrics."""

import math

import mlflow
import pandas as pd
import pytest

from analysis.report import build_report
from analysis.serving import Assumptions, serving_costs
from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.tracking import Tracker
from tests.conftest import SMOKE, TINY

COSTS = pd.DataFrame(
    [
        # paradigm, algorithm, variant, runs, state B, tokens/query, train FLOPs/event, trainable
        ("memory", "none", "", 3, 2_000.0, 30.0, 0.0, 0.0),
        ("full_ft", "grpo", "", 3, 4_000_000.0, 20.0, 5e9, 1e6),
        ("adapter", "grpo", "", 3, 40_000.0, 20.0, 3e9, 1e4),
    ],
    columns=[
        "paradigm",
        "algorithm",
        "variant",
        "runs",
        "state_bytes",
        "tokens_per_query",
        "train_flops_per_event",
        "trainable_params",
    ],
)


def cell(picture: pd.DataFrame, paradigm: str, users: int) -> pd.Series:
    [row] = picture[(picture["paradigm"] == paradigm) & (picture["users"] == users)].itertuples(index=False)
    return pd.Series(row._asdict())


def test_cells_follow_from_the_per_user_costs_by_hand():
    node = 1e9  # a 1 GB node: 249 full models, 24,900 adapters
    picture = serving_costs(COSTS, 1e6, 4e6, Assumptions(node_bytes=node))
    assert len(picture) == 3 * 4
    full = cell(picture, "full_ft", 1_000_000)
    assert full["storage_bytes"] == 1_000_000 * 4e6  # no shared base: each user has the whole model
    assert full["answer_flops_per_query"] == 2 * 1e6 * 20
    assert full["flops_per_query"] == 2 * 1e6 * 20 + 5e9
    assert full["resident_users"] == 250  # 1e9 / 4e6
    assert full["loaded_bytes_per_query"] == pytest.approx(4e6 * (1 - 250 / 1e6))
    adapter = cell(picture, "adapter", 10_000)
    assert adapter["storage_bytes"] == 4e6 + 10_000 * 40_000
    assert adapter["answer_flops_per_query"] == 2 * (1e6 + 1e4) * 20  # an unmerged adapter adds its FLOPs
    assert adapter["resident_users"] == math.floor((1e9 - 4e6) / 40_000) == 24_900
    assert adapter["loaded_bytes_per_query"] == 0.0  # all 10,000 users fit
    assert cell(picture, "adapter", 100_000)["loaded_bytes_per_query"] == pytest.approx(40_000 * (1 - 0.249))
    memory = cell(picture, "memory", 1_000)
    assert memory["storage_bytes"] == 4e6 + 1_000 * 2_000
    assert memory["flops_per_query"] == 2 * 1e6 * 30 and memory["learning_flops_per_query"] == 0


def test_a_base_larger_than_the_node_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        serving_costs(COSTS, 1e6, 4e6, Assumptions(node_bytes=1e6))


def test_the_reports_serving_cell_is_recomputed_from_the_logged_costs(tracking_uri, tiny_base, tmp_path):
    experiment = load_experiment(SMOKE, [TINY, "budget.feedback_events=16"])
    experiment = experiment.model_copy(
        update={
            "grid": [
                {"paradigm.name": "memory"},
                {"paradigm.name": "full_ft", "algorithm.name": "reinforce", "algorithm.group_size": 2},
                {"paradigm.name": "hybrid", "algorithm.name": "reinforce", "algorithm.group_size": 2},
            ]
        }
    )
    results = run_experiment(experiment, Tracker(tracking_uri), progress=False)
    report = build_report(["smoke"], tracking_uri, tmp_path / "report")
    picture = pd.read_csv(report.out_dir / "serving.csv")
    assert (report.out_dir / "figures" / "serving_cost.png").is_file()
    assert "Serving cost at scale" in report.markdown.read_text()

    client = mlflow.MlflowClient(tracking_uri)
    logged = {r.name.split("-")[0]: client.get_run(r.run_id).data.metrics for r in results}
    events = {
        name: max(m.step for m in client.get_metric_history(r.run_id, "cost/storage_bytes"))
        for name, r in zip(logged, results, strict=True)
    }
    base_parameters = logged["full_ft"]["cost/trainable_params"]
    base_bytes = logged["full_ft"]["cost/storage_bytes"]
    hybrid = logged["hybrid"]
    tokens = (hybrid["cost/prompt_tokens"] + hybrid["cost/generated_tokens"]) / events["hybrid"]
    expected_flops = (
        2 * (base_parameters + hybrid["cost/trainable_params"]) * tokens
        + hybrid["cost/train_flops"] / events["hybrid"]
    )
    got = cell(picture, "hybrid", 1_000_000)
    assert got["storage_bytes"] == pytest.approx(base_bytes + 1e6 * hybrid["cost/storage_bytes"], rel=1e-5)
    assert got["flops_per_query"] == pytest.approx(expected_flops, rel=1e-5)
