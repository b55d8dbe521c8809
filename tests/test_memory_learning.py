"""The memory paradigm on the real base: it learns facts, searches less, and shows stale memories (slow)."""

import mlflow
import pytest

from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.tracking import Tracker
from paradigms.backbone import load_backbone
from paradigms.memory.reflection import llm_lessons
from tests.conftest import SMOKE

pytestmark = pytest.mark.slow


def curves(tracking_uri, overrides, metric="eval/personal_accuracy"):
    experiment = load_experiment(SMOKE, overrides)
    [result] = run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(result.run_id, key)]
        for key in (
            metric,
            "eval/search_calls_per_query",
            "eval/general_accuracy",
            "eval/forgetting",
            "eval/base_general_accuracy",
            "eval/general_accuracy_without_notes",
        )
    }
    return history, client.get_run(result.run_id)


USER_FACTS = [
    "task.suite=user_facts",
    "budget.feedback_events=120",
    "evaluation.every=40",
    "paradigm.name=memory",
]


def test_memory_learns_the_users_facts_and_stops_searching(tracking_uri, real_base):
    history, run = curves(tracking_uri, USER_FACTS)
    accuracy, searches = history["eval/personal_accuracy"], history["eval/search_calls_per_query"]
    assert accuracy[-1][1] >= 0.8
    assert searches[-1][1] < searches[0][1] - 0.5  # answers from memory instead of searching
    # the model never changes: without its notes it answers the general probe exactly as the base
    assert history["eval/general_accuracy_without_notes"] == history["eval/base_general_accuracy"]
    assert run.data.metrics["memory/retrieval_relevance"] > 0.3


def test_memory_learns_from_corrections_alone_while_frozen_stays_at_chance(tracking_uri, real_base):
    memory, _ = curves(tracking_uri, [*USER_FACTS, "task.search=false"])
    frozen, _ = curves(tracking_uri, [*USER_FACTS, "task.search=false", "paradigm.name=frozen"])
    assert memory["eval/personal_accuracy"][-1][1] >= 0.8
    assert frozen["eval/personal_accuracy"][-1][1] <= 0.3


def test_stale_memories_dip_and_recover_under_drift(tracking_uri, real_base):
    history, run = curves(
        tracking_uri,
        [
            "task.suite=drift",
            "task.search=false",
            "budget.feedback_events=300",
            "evaluation.every=20",
            "paradigm.name=memory",
            "paradigm.reflection=template",
        ],
    )
    accuracy = dict(history["eval/personal_accuracy"])
    boundary = 100  # three phases over 300 events, evaluated every 20
    before, after = accuracy[boundary - 20], accuracy[boundary]
    assert after < before  # the facts changed; the memories are stale
    assert accuracy[2 * boundary - 20] > after  # corrections replace them
    assert {"eval/phase_accuracy/0", "eval/phase_accuracy/1", "eval/phase_accuracy/2"} <= set(
        run.data.metrics
    )


def test_the_base_writes_lessons_from_corrections(real_base):
    backbone = load_backbone(real_base, "cpu")
    prompts = [
        "reflect ask my dog ? said max correction my dog rex . lesson",
        "reflect ask kalo color ? said - red correction format color json . lesson",
        "reflect ask my city ? said { answer : oslo } reward good lesson",
        "reflect ask my city ? said oslo reward bad lesson",
    ]
    assert llm_lessons(backbone.model, backbone.tokenizer, prompts, backbone.protocol) == [
        "note my dog rex .",
        "note format color json .",
        "note my city oslo .",
        None,
    ]
