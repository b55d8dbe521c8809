"""Same seed, same streams and evaluation items for every paradigm; same seed twice, same metrics."""

import random

import mlflow
import numpy as np
import pytest
import torch

from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.seeding import isolated_rng, seed_everything
from experiments.tracking import Tracker
from tasks.settings import TaskSettings
from tasks.suites import SUITES
from tests.conftest import SMOKE, TINY, metric_histories


def test_streams_and_eval_sets_depend_only_on_suite_and_seed():
    options = TaskSettings()
    for suite in SUITES.names():
        if SUITES[suite].reads_file:  # a user-log file: tests/test_user_logs.py
            continue
        first, again = SUITES[suite].stream(3, 50, options), SUITES[suite].stream(3, 50, options)
        assert first._fingerprint == again._fingerprint
        assert first._fingerprint != SUITES[suite].stream(4, 50, options)._fingerprint
        assert (
            SUITES[suite].personal_eval(3, options)._fingerprint
            == SUITES[suite].personal_eval(3, options)._fingerprint
        )


def test_every_paradigm_gets_the_same_stream_fingerprint(tracking_uri, tiny_base):
    experiment = load_experiment(SMOKE, [TINY, "budget.feedback_events=8"])
    experiment = experiment.model_copy(
        update={"grid": [{"paradigm.name": "frozen"}, {"paradigm.name": "oracle"}]}
    )
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    runs = [
        r
        for r in client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    digests = {
        r.data.tags["paradigm"]: sorted(d.dataset.digest for d in r.inputs.dataset_inputs) for r in runs
    }
    assert digests["frozen"] == digests["oracle"] and len(digests["frozen"]) == 2


def test_seed_everything_reports_what_it_set():
    assert seed_everything(7)["torch"] == 7


# the paradigms whose runs draw random numbers or change state: sampled GRPO groups updating every
# weight or an adapter, and memory writing the lessons its own model reflects
DETERMINISM = {
    "frozen": [],
    "full_ft-grpo": ["paradigm.name=full_ft", "algorithm.name=grpo", "algorithm.group_size=2"],
    "adapter-grpo": ["paradigm.name=adapter", "algorithm.name=grpo", "algorithm.group_size=2"],
    "memory-llm": ["paradigm.name=memory", "paradigm.reflection=llm"],
}


@pytest.mark.parametrize("overrides", DETERMINISM.values(), ids=DETERMINISM.keys())
def test_same_config_and_seed_give_identical_metrics(overrides, tracking_uri, tiny_base):
    experiment = load_experiment(SMOKE, [TINY, *overrides])
    first = run_experiment(experiment, Tracker(tracking_uri), progress=False)[0]
    second = run_experiment(experiment, Tracker(tracking_uri), progress=False)[0]
    client = mlflow.MlflowClient(tracking_uri)
    histories = metric_histories(client, first.run_id)
    assert histories == metric_histories(client, second.run_id)
    assert "train/reward" in histories and "cost/total_flops" in histories
    if overrides:  # the run learned something: its state moved (its weights, or its store filled)
        moved = "eval/kl_to_base" if "algorithm.name=grpo" in overrides else "memory/store_entries"
        assert histories[moved][-1][1] > 0, histories[moved]


def test_the_evaluation_schedule_does_not_change_what_is_learned(tracking_uri, tiny_base):
    """Evaluating more often draws no random numbers from the training's stream."""
    common = [TINY, "paradigm.name=adapter", "algorithm.name=reinforce", "budget.feedback_events=32"]
    tracker = Tracker(tracking_uri)
    often = run_experiment(load_experiment(SMOKE, [*common, "evaluation.every=4"]), tracker, progress=False)
    rarely = run_experiment(load_experiment(SMOKE, [*common, "evaluation.every=32"]), tracker, progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    train = {
        name: {
            key: history
            for key, history in metric_histories(client, result[0].run_id).items()
            if key.startswith("train/")
        }
        for name, result in (("often", often), ("rarely", rarely))
    }
    assert train["often"] == train["rarely"] and train["often"]["train/reward"]


def test_isolated_rng_leaves_every_global_generator_where_it_was():
    seed_everything(3)
    with isolated_rng():
        random.random(), np.random.rand(), torch.rand(1)
    after = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert after == (random.random(), np.random.rand(), torch.rand(1).item())


def test_a_budget_that_is_not_a_whole_number_of_batches_is_still_evaluated_at_the_end(
    tracking_uri, tiny_base
):
    # GRPO takes whole batches (4 queries x 2 responses = 8 events): 20 events end at 16
    overrides = [
        TINY,
        "paradigm.name=adapter",
        "algorithm.name=grpo",
        "algorithm.group_size=2",
        "budget.feedback_events=20",
        "evaluation.every=100",
    ]
    [result] = run_experiment(load_experiment(SMOKE, overrides), Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    train_steps = [m.step for m in client.get_metric_history(result.run_id, "train/reward")]
    eval_steps = [m.step for m in client.get_metric_history(result.run_id, "eval/personal_accuracy")]
    assert eval_steps == [0, max(train_steps)] and max(train_steps) == 16
