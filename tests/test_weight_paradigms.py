"""Every algorithm x {full_ft, adapter} on smoke.yaml: the right parameters change, the frozen ones do not."""

import math

import pytest
import torch

from experiments.config import ConfigError, load_experiment
from experiments.run import assemble
from tests.conftest import SMOKE, TINY

ALGORITHMS = ["grpo", "reinforce", "ppo", "sft"]


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, tensor in module.state_dict().items() if not torch.equal(before[name], tensor)}


def smoke_parts(paradigm: str, algorithm: str, *extra: str):
    # a rich format reward keeps rewards varied even on the tiny, barely trained base
    config = load_experiment(
        SMOKE,
        [
            TINY,
            f"paradigm.name={paradigm}",
            f"algorithm.name={algorithm}",
            "algorithm.learning_rate=0.01",
            "task.suite=preferences",
            *extra,
        ],
    ).runs()[0]
    return assemble(config, progress=False)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_full_ft_changes_the_weights(algorithm, tiny_base):
    parts = smoke_parts("full_ft", algorithm)
    before = snapshot(parts.paradigm.model)
    parts.paradigm.train(parts.session)
    assert parts.session.events >= parts.session.budget
    assert changed(before, parts.paradigm.model), f"{algorithm} changed no weight"
    assert parts.paradigm.train_flops() > 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_adapter_changes_only_the_adapter(algorithm, tiny_base):
    parts = smoke_parts("adapter", algorithm)
    before = snapshot(parts.paradigm.model)
    parts.paradigm.train(parts.session)
    moved = changed(before, parts.paradigm.model)
    assert moved, f"{algorithm} changed nothing"
    assert all("lora_" in name for name in moved), sorted(n for n in moved if "lora_" not in n)
    trainable = parts.paradigm.trainable_parameters()
    assert 0 < trainable < parts.paradigm.base_parameters
    assert parts.paradigm.storage_bytes() < 4 * parts.paradigm.base_parameters


def test_adapter_and_full_ft_differ_only_in_what_is_trainable(tiny_base):
    full, adapter = smoke_parts("full_ft", "reinforce"), smoke_parts("adapter", "reinforce")
    assert full.paradigm.trainable_parameters() == full.paradigm.base_parameters
    assert adapter.paradigm.trainable_parameters() < adapter.paradigm.base_parameters
    assert type(full.paradigm.learner) is type(adapter.paradigm.learner)


def test_algorithms_that_need_groups_refuse_a_group_of_one():
    with pytest.raises(ConfigError, match=r"algorithm\.group_size"):
        load_experiment(SMOKE, ["paradigm.name=adapter", "algorithm.name=grpo", "algorithm.group_size=1"])


def test_weight_paradigms_need_an_algorithm_and_controls_refuse_one():
    with pytest.raises(ConfigError, match="does not apply"):
        load_experiment(SMOKE, ["paradigm.name=full_ft", "algorithm.name=none"])
    with pytest.raises(ConfigError, match="does not apply"):
        load_experiment(SMOKE, ["paradigm.name=memory", "algorithm.name=ppo"])


def test_a_diverging_run_stops_with_a_clear_reason(tiny_base):
    parts = smoke_parts("full_ft", "reinforce")
    for parameter in parts.paradigm.model.parameters():
        parameter.data.fill_(math.nan)
    with pytest.raises(RuntimeError, match="feedback events"):
        parts.paradigm.train(parts.session)


@pytest.mark.parametrize("algorithm", ["grpo", "reinforce"])
def test_a_warm_start_imitates_the_corrections_then_the_algorithm_takes_over(algorithm, tiny_base):
    parts = smoke_parts("adapter", algorithm, "algorithm.warm_start_events=8")
    reports = []
    parts.session.on_feedback = reports.append
    parts.paradigm.train(parts.session)
    warm = [r for r in reports if r.events <= 8]
    assert [r.events for r in warm][-1] == 8  # the warm start stops at its share, not past it
    assert all("train/sft_targets" in r.train_metrics for r in warm)  # sft's update, every batch
    assert all(r.interaction.feedback_events == len(r.interaction.items) for r in warm)  # one answer each
    after = [r for r in reports if r.events > 8]
    assert after and not any("train/sft_targets" in r.train_metrics for r in after)
    assert reports[-1].events == parts.session.budget
    learner, warm_start = parts.paradigm.learner.update_flops, parts.paradigm.warm_start.update_flops
    assert learner > 0 and warm_start > 0
    assert parts.paradigm.train_flops() == pytest.approx(learner + warm_start)


def test_a_warm_start_must_leave_the_algorithm_events_and_sft_has_none():
    with pytest.raises(ConfigError, match=r"algorithm\.warm_start_events: 16 is the whole budget"):
        load_experiment(SMOKE, ["paradigm.name=adapter", "algorithm.warm_start_events=16"])
    with pytest.raises(ConfigError, match=r"algorithm\.warm_start_events"):
        load_experiment(
            SMOKE, ["paradigm.name=adapter", "algorithm.name=sft", "algorithm.warm_start_events=4"]
        )
    config = load_experiment(SMOKE, ["paradigm.name=adapter", "algorithm.warm_start_events=4"]).runs()[0]
    assert "-grpo-warm4-" in config.run_name()
