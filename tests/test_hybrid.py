"""The hybrid paradigm: memory and a LoRA adapter on one stream, each fed what its route sends it."""

import mlflow
import pytest
import torch

from experiments.config import ConfigError, load_experiment
from experiments.run import assemble, run_experiment
from experiments.tracking import Tracker
from paradigms.hybrid import is_fact
from tests.conftest import SMOKE, TINY
from tests.test_weight_paradigms import ALGORITHMS, changed, snapshot


def hybrid_parts(algorithm: str, *overrides: str):
    config = load_experiment(
        SMOKE,
        [
            TINY,
            "paradigm.name=hybrid",
            f"algorithm.name={algorithm}",
            "algorithm.learning_rate=0.01",
            "paradigm.memory.reflection=template",
            "budget.feedback_events=32",
            *overrides,
        ],
    ).runs()[0]
    return assemble(config, progress=False)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hybrid_trains_only_its_adapter_and_fills_its_memory(algorithm, tiny_base):
    parts = hybrid_parts(algorithm, "paradigm.route=both")
    hybrid = parts.paradigm
    before = snapshot(hybrid.model)
    hybrid.train(parts.session)
    assert parts.session.events >= parts.session.budget
    moved = changed(before, hybrid.model)
    assert moved, f"{algorithm} changed nothing"
    assert all("lora_" in name for name in moved), sorted(n for n in moved if "lora_" not in n)
    assert len(hybrid.memory.store) > 0
    # the ledger adds both parts
    adapter_bytes = sum(p.numel() * p.element_size() for p in hybrid.learner.trainable())
    assert hybrid.storage_bytes() == adapter_bytes + hybrid.memory.store.nbytes()
    adapter_flops = hybrid.learner.update_flops + hybrid.learner.continual.flops
    assert adapter_flops > 0 and hybrid.memory.train_flops() > 0  # the memory part's notes were embedded
    assert hybrid.train_flops() == adapter_flops + hybrid.memory.train_flops()
    assert hybrid.trainable_parameters() == sum(p.numel() for p in hybrid.learner.trainable())
    metrics = hybrid.extra_metrics()
    assert metrics["hybrid/memory_events"] == metrics["hybrid/adapter_events"] == parts.session.events
    assert metrics["memory/store_entries"] == len(hybrid.memory.store)


@pytest.mark.parametrize("algorithm", ["reinforce", "grpo"])
def test_route_kind_sends_facts_to_memory_and_the_rest_to_the_adapter(algorithm, tiny_base):
    parts = hybrid_parts(algorithm)  # route: kind, the default
    hybrid, seen = parts.paradigm, []
    parts.session.on_feedback = lambda report: seen.append(report.interaction)
    hybrid.train(parts.session)
    facts = sum(is_fact(item) for interaction in seen for item in interaction.items)
    assert 0 < facts < parts.session.events  # the default suite mixes both kinds
    assert hybrid.memory_events == facts
    assert hybrid.adapter_events == parts.session.events - facts
    keys = {record.key for record in hybrid.memory.store.records()}
    assert keys and all(key.startswith("fact:") for key in keys), keys


def test_route_kind_gives_the_adapter_no_gradient_from_fact_questions(tiny_base):
    parts = hybrid_parts("reinforce", "task.suite=user_facts")  # only fact questions
    hybrid = parts.paradigm
    before = snapshot(hybrid.model)
    hybrid.train(parts.session)
    assert not changed(before, hybrid.model)
    assert hybrid.learner.update_flops == 0 and hybrid.adapter_events == 0
    assert hybrid.train_flops() == hybrid.memory.train_flops() > 0  # only the memory part learned
    assert len(hybrid.memory.store) > 0


def test_route_feedback_withholds_corrections_from_the_adapter_and_writes_only_corrected(tiny_base):
    parts = hybrid_parts("reinforce", "paradigm.route=feedback")
    hybrid, seen = parts.paradigm, []
    parts.session.on_feedback = lambda report: seen.append(report.interaction)
    hybrid.train(parts.session)
    corrected = sum(c is not None for interaction in seen for c in interaction.corrections)
    assert hybrid.memory_events == corrected > 0
    assert all(record.correction is not None for record in hybrid.memory.store.records())
    stripped = hybrid.weight_feedback(seen[0])
    assert all(c is None for c in stripped.corrections) and stripped.rewards == seen[0].rewards


def test_memory_part_reads_and_writes_with_the_untouched_base(tiny_base):
    parts = hybrid_parts("reinforce", "paradigm.memory.embedder=backbone", "paradigm.route=both")
    hybrid = parts.paradigm
    hybrid.train(parts.session)
    with torch.no_grad():
        for module in hybrid.policy.modules():  # make the adapter's effect impossible to miss
            if hasattr(module, "lora_B"):
                for weight in module.lora_B.values():
                    weight.weight.fill_(1.0)
    items = [parts.session.resolve(row) for row in parts.personal_eval.select(range(4))]
    adapted = hybrid.memory.embedder.embed(["ask my dog ?"])
    with hybrid.policy.disable_adapter():
        base = hybrid.memory.embedder.embed(["ask my dog ?"])
        untouched = hybrid.memory.context_for(items)
    assert not (adapted == base).all()  # the adapter would move the store's keys ...
    assert hybrid.context_for(items) == untouched  # ... but the hybrid reads memory with the base


def test_sft_with_route_feedback_and_a_tool_policy_are_refused():
    with pytest.raises(ConfigError, match=r"paradigm\.route"):
        load_experiment(SMOKE, ["paradigm.name=hybrid", "algorithm.name=sft", "paradigm.route=feedback"])
    with pytest.raises(ConfigError, match="tool_policy"):
        load_experiment(SMOKE, ["paradigm.name=hybrid", "paradigm.memory.tool_policy.name=qlearning"])
    with pytest.raises(ConfigError, match="does not apply"):
        load_experiment(SMOKE, ["paradigm.name=hybrid", "algorithm.name=none"])


def test_hybrid_run_logs_both_parts(tracking_uri, tiny_base):
    experiment = load_experiment(
        SMOKE, [TINY, "paradigm.name=hybrid", "algorithm.name=reinforce", "paradigm.route=both"]
    )
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    [child] = [
        r
        for r in client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    assert child.info.status == "FINISHED"
    assert child.info.run_name == "hybrid-reinforce-both-default-s0"
    metrics = child.data.metrics
    assert metrics["cost/storage_bytes"] > metrics["memory/store_bytes"] > 0
    assert metrics["cost/context_tokens_per_query"] > 0
    stored = {a.path for a in client.list_artifacts(child.info.run_id, "state")}
    assert {"state/adapter", "state/memory"} <= stored
