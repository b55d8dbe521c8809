"""Forgetting is the drop from the untouched base, on world knowledge (``eval/forgetting``) and on
following an explicit format request (``eval/instruction_forgetting``), the same whatever the schedule."""

import mlflow
import pytest

from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.tracking import Tracker
from tests.conftest import SMOKE, TINY


def histories(tracking_uri, overrides, *metrics):
    [result] = run_experiment(
        load_experiment(SMOKE, [TINY, *overrides]), Tracker(tracking_uri), progress=False
    )
    client = mlflow.MlflowClient(tracking_uri)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(result.run_id, key)] for key in metrics
    }


def test_frozen_forgets_exactly_nothing_on_either_probe_at_every_evaluation(tracking_uri, tiny_base):
    logged = histories(
        tracking_uri,
        ["budget.feedback_events=16", "evaluation.every=4"],
        "eval/forgetting",
        "eval/instruction_forgetting",
        "eval/general_accuracy",
        "eval/base_general_accuracy",
        "eval/general_knowledge",
        "eval/base_general_knowledge",
        "eval/instruction_following",
        "eval/base_instruction_following",
    )
    for metric in ("eval/forgetting", "eval/instruction_forgetting"):
        assert [s for s, _ in logged[metric]] == [0, 4, 8, 12, 16]
        assert {v for _, v in logged[metric]} == {0.0}, metric
    assert logged["eval/general_accuracy"] == logged["eval/base_general_accuracy"]
    assert logged["eval/general_knowledge"] == logged["eval/base_general_knowledge"]
    assert logged["eval/instruction_following"] == logged["eval/base_instruction_following"]


def test_final_forgetting_does_not_depend_on_how_often_a_run_is_evaluated(tracking_uri, tiny_base):
    common = [
        "task.suite=preferences",  # one phase: evaluations only where the schedule puts them
        "paradigm.name=full_ft",
        "algorithm.name=reinforce",
        "algorithm.learning_rate=0.001",  # large enough to move the tiny base's general answers
        "budget.feedback_events=48",
    ]
    metrics = (
        "eval/forgetting",
        "eval/general_knowledge",
        "eval/base_general_knowledge",
        "eval/instruction_forgetting",
        "eval/instruction_following",
        "eval/base_instruction_following",
    )
    rarely = histories(tracking_uri, [*common, "evaluation.every=48"], *metrics)
    often = histories(tracking_uri, [*common, "evaluation.every=24"], *metrics)
    assert [s for s, _ in rarely["eval/forgetting"]] == [0, 48]
    assert [s for s, _ in often["eval/forgetting"]] == [0, 32, 48]  # batches of 4 queries x 4 responses
    for drop, score, base_score in (
        ("eval/forgetting", "eval/general_knowledge", "eval/base_general_knowledge"),
        ("eval/instruction_forgetting", "eval/instruction_following", "eval/base_instruction_following"),
    ):
        assert rarely[drop][-1] == often[drop][-1], drop
        for logged in (rarely, often):
            base = logged[base_score][0][1]
            assert {v for _, v in logged[base_score]} == {base}
            for (_, value), (_, now) in zip(logged[drop], logged[score], strict=True):
                assert value == pytest.approx(base - now)  # signed: a gain is negative


def test_memory_logs_both_probes_without_its_notes(tracking_uri, tiny_base):
    logged = histories(
        tracking_uri,
        ["paradigm.name=memory", "paradigm.reflection=template", "budget.feedback_events=16"],
        "eval/forgetting",
        "eval/general_accuracy",
        "eval/base_general_accuracy",
        "eval/general_accuracy_without_notes",
        "eval/general_knowledge",
        "eval/base_general_knowledge",
        "eval/general_knowledge_without_notes",
    )
    assert [s for s, _ in logged["eval/general_knowledge_without_notes"]] == [0, 8, 16]
    # memory's model is the base: without its notes it answers exactly as the base does, so the
    # notes are the whole of its forgetting
    assert logged["eval/general_accuracy_without_notes"] == logged["eval/base_general_accuracy"]
    assert logged["eval/general_knowledge_without_notes"] == logged["eval/base_general_knowledge"]
    for (_, forgetting), (_, knowledge), (_, bare) in zip(
        logged["eval/forgetting"],
        logged["eval/general_knowledge"],
        logged["eval/general_knowledge_without_notes"],
        strict=True,
    ):
        assert forgetting == pytest.approx(bare - knowledge)
