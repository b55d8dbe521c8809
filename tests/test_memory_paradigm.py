"""The memory paradigm: a smoke run, bitwise-unchanged weights, each reflection mode, write policies."""

import mlflow
import pytest

from experiments import metrics as m
from experiments.config import load_experiment
from experiments.run import assemble, run_experiment
from experiments.tracking import Tracker
from paradigms.backbone import load_backbone, weights_digest
from paradigms.memory import reflection
from tasks.items import Item, Query
from tasks.protocols import PROTOCOLS, Statement
from tests.conftest import SMOKE, TINY

GRAMMAR = PROTOCOLS["grammar"]

PERSONAL = Item(Query("ask my dog ?", True), "fact:dog", "rex", None, True)
PREFERENCE = Item(Query("ask kalo color ?", True), "world:kalo:color", "red", "json", False)
GOOD = {"correctness": 1.0, "format": 1.0}
WRONG_FORMAT = {"correctness": 1.0, "format": 0.0}


def test_template_lessons():
    assert (
        reflection.template_lesson(
            PERSONAL,
            "<answer> max </answer>",
            {"correctness": 0.0, "format": 1.0},
            Statement("my", "dog", "rex"),
            GRAMMAR,
        )
        == "note my dog rex ."
    )
    assert (
        reflection.template_lesson(PERSONAL, "<answer> - rex </answer>", GOOD, None, GRAMMAR)
        == "note my dog rex ."
    )
    assert (
        reflection.template_lesson(PREFERENCE, "<answer> { answer : red } </answer>", GOOD, None, GRAMMAR)
        == "note format color json ."
    )
    assert (
        reflection.template_lesson(PREFERENCE, "<answer> red </answer>", WRONG_FORMAT, None, GRAMMAR) is None
    )


def test_raw_experience_and_reflection_prompt():
    assert (
        reflection.raw_experience(PERSONAL, "<answer> max </answer>", WRONG_FORMAT, GRAMMAR)
        == "ask my dog ? said max reward bad"
    )
    assert (
        reflection.reflection_prompt(
            PERSONAL, "<answer> max </answer>", {}, Statement("my", "dog", "rex"), GRAMMAR, None
        )
        == "reflect ask my dog ? said max correction my dog rex . lesson"
    )
    assert reflection.key_of("note format color json .", GRAMMAR) == "format:color"
    assert reflection.key_of("note my dog rex .", GRAMMAR) == "fact:dog"
    assert reflection.key_of("ask my dog ?", GRAMMAR) is None


@pytest.mark.parametrize("mode", ["llm", "template", "none"])
def test_memory_leaves_weights_bitwise_unchanged_and_fills_its_store(mode, tiny_base):
    config = load_experiment(
        SMOKE, [TINY, "paradigm.name=memory", f"paradigm.reflection={mode}", "task.suite=user_facts"]
    ).runs()[0]
    parts = assemble(config, progress=False)
    before = weights_digest(parts.paradigm.model)
    parts.paradigm.train(parts.session)
    assert weights_digest(parts.paradigm.model) == before
    store = parts.paradigm.store
    if mode == "none":
        assert len(store) > 0 and all(r.lesson is None for r in store.records())
    if mode == "template":  # every interaction was corrected or succeeded: a lesson per fact at most
        assert 0 < len(store) <= 5 and all(r.key and r.key.startswith("fact:") for r in store.records())
    metrics = parts.paradigm.extra_metrics()
    assert metrics["memory/store_entries"] == len(store)
    assert metrics["memory/store_bytes"] > 0


def test_write_policy_corrected_only_stores_corrected_interactions(tiny_base):
    config = load_experiment(
        SMOKE,
        [
            TINY,
            "paradigm.name=memory",
            "paradigm.reflection=template",
            "paradigm.write_policy=corrected",
            "task.suite=user_facts",
        ],
    ).runs()[0]
    parts = assemble(config, progress=False)
    parts.paradigm.train(parts.session)
    assert all(r.correction is not None for r in parts.paradigm.store.records())


def test_memory_smoke_run_logs_its_store(tracking_uri, tiny_base):
    run_experiment(
        load_experiment(SMOKE, [TINY, "paradigm.name=memory"]), Tracker(tracking_uri), progress=False
    )
    client = mlflow.MlflowClient(tracking_uri)
    [child] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    assert child.info.status == "FINISHED"
    assert {"memory/retrieval_latency_p95_ms", "memory/store_entries"} <= set(child.data.metrics)
    stored = {a.path for a in client.list_artifacts(child.info.run_id, "state/memory")}
    assert {"state/memory/index.faiss", "state/memory/memories.jsonl", "state/memory/store.json"} <= stored
    assert "eval/kl_to_base" not in child.data.metrics  # its weights are the base's: no distance to log


def test_memory_with_llm_reflection_counts_its_reflection_and_embeddings_as_compute(tracking_uri, tiny_base):
    overrides = [TINY, "paradigm.name=memory", "paradigm.reflection=llm", "task.suite=user_facts"]
    [result] = run_experiment(load_experiment(SMOKE, overrides), Tracker(tracking_uri), progress=False)
    metrics = mlflow.MlflowClient(tracking_uri).get_run(result.run_id).data.metrics
    # the reflection model's generation at least: 2 x parameters x one token per written lesson
    parameters = sum(p.numel() for p in load_backbone(tiny_base).model.parameters())
    assert metrics["cost/train_flops"] >= 2 * parameters * 16
    assert metrics["cost/inference_flops"] > 0
    assert metrics["cost/total_flops"] == metrics["cost/train_flops"] + metrics["cost/inference_flops"]
    # the names experiments/metrics.py declares for the report's compute breakdown
    parts = metrics[m.REFLECTION_FLOPS] + metrics[m.NOTE_EMBEDDING_FLOPS]
    assert metrics[m.REFLECTION_FLOPS] > 0 and parts == pytest.approx(metrics["cost/train_flops"])
    assert 0 < metrics[m.RETRIEVAL_EMBEDDING_FLOPS] < metrics["cost/inference_flops"]


def test_memory_books_retrieval_as_inference_and_note_embeddings_as_learning(tiny_base):
    config = load_experiment(
        SMOKE, [TINY, "paradigm.name=memory", "paradigm.reflection=template", "task.suite=user_facts"]
    ).runs()[0]
    parts = assemble(config, progress=False)
    memory = parts.paradigm
    parts.paradigm.train(parts.session)
    assert memory.train_flops() > 0 and memory.inference_flops() > 0
    assert memory.train_flops() + memory.inference_flops() == memory.embedder.flops  # nothing else runs
    before = memory.embedder.flops, memory.train_flops(), memory.inference_flops()
    parts.evaluator.evaluate(memory)  # the evaluator's retrievals are measurement, not the agent's cost
    assert (memory.train_flops(), memory.inference_flops()) == before[1:]
    assert memory.embedder.flops > before[0]
