"""Evaluations in a forked copy of the run (``evaluation.background``) log exactly the metrics evaluations in
place log, only for paradigms whose evaluation writes no state, and bring the copy's errors home."""

import os

import mlflow
import pytest

from experiments import background_evaluation
from experiments.config import load_experiment
from experiments.metrics import EVALUATION_WAIT_SECONDS, measures_the_machine
from experiments.run import execute
from experiments.tracking import Tracker
from paradigms.session import Diverged
from tests.conftest import SMOKE, TINY, metric_histories

pytestmark = pytest.mark.skipif(not background_evaluation.available(), reason="this platform cannot fork")

ONE_THREAD = "threads=1"  # a copy evaluates only beside a one-thread run (the other core is its)
WEIGHT_LEARNERS = {
    "full_ft-grpo": ["paradigm.name=full_ft", "algorithm.name=grpo", "algorithm.group_size=2"],
    "adapter-grpo": ["paradigm.name=adapter", "algorithm.name=grpo", "algorithm.group_size=2"],
    "full_ft-reinforce": ["paradigm.name=full_ft", "algorithm.name=reinforce"],
    "adapter-sft": ["paradigm.name=adapter", "algorithm.name=sft"],
}
#: Paradigms whose evaluation writes their state (retrieval counters): always evaluated in place.
IN_PLACE = {
    "frozen": [],
    "memory": ["paradigm.name=memory"],
    "hybrid-grpo": ["paradigm.name=hybrid", "algorithm.name=grpo", "algorithm.group_size=2"],
}


@pytest.fixture
def forks(monkeypatch) -> list[int]:
    """The events of every evaluation started in a forked copy during the test."""
    started: list[int] = []
    start = background_evaluation.BackgroundEvaluation.start

    def counted(self, measure, label=None):
        started.append(label)
        return start(self, measure, label)

    monkeypatch.setattr(background_evaluation.BackgroundEvaluation, "start", counted)
    return started


def _tracked(config, tracker: Tracker, name: str) -> str:
    run = tracker.start_run("background-evaluation", name)
    execute(config, run, progress=False)
    run.finish()
    return run.run_id


def _results(client, run_id: str) -> dict:
    run = client.get_run(run_id)
    ignore = {key for key in run.data.metrics if measures_the_machine(key)}
    return metric_histories(client, run_id, ignore)


@pytest.mark.parametrize("overrides", WEIGHT_LEARNERS.values(), ids=WEIGHT_LEARNERS.keys())
def test_a_copy_logs_what_an_evaluation_in_place_logs(overrides, tracking_uri, tiny_base, forks):
    tracker, client = Tracker(tracking_uri), mlflow.MlflowClient(tracking_uri)
    in_place = load_experiment(SMOKE, [TINY, ONE_THREAD, "evaluation.background=false", *overrides]).runs()[0]
    in_place_id = _tracked(in_place, tracker, "in-place")
    assert forks == []
    beside = load_experiment(SMOKE, [TINY, ONE_THREAD, *overrides]).runs()[0]
    beside_id = _tracked(beside, tracker, "beside")
    expected = _results(client, in_place_id)
    assert "eval/personal_accuracy" in expected and "eval/kl_to_base" in expected
    evaluations = [step for step, _ in expected["eval/personal_accuracy"]]
    # every evaluation but the last ran in a copy; the last is the one the run waits for anyway
    assert forks == evaluations[:-1], (forks, evaluations)
    assert _results(client, beside_id) == expected
    assert beside.config_hash() == in_place.config_hash()  # where it evaluated is not a config
    waited = client.get_metric_history(beside_id, EVALUATION_WAIT_SECONDS)
    assert [m.step for m in waited] == evaluations


@pytest.mark.parametrize("overrides", IN_PLACE.values(), ids=IN_PLACE.keys())
def test_a_paradigm_whose_evaluation_writes_its_state_evaluates_in_place(overrides, tiny_base, forks):
    execute(load_experiment(SMOKE, [TINY, ONE_THREAD, *overrides]).runs()[0], None, progress=False)
    assert forks == []


def test_a_run_of_more_threads_evaluates_in_place(tiny_base, forks):
    """Two threads and a copy's two more would spin against each other on the machine's cores."""
    overrides = ["threads=2", *WEIGHT_LEARNERS["full_ft-grpo"]]
    execute(load_experiment(SMOKE, [TINY, *overrides]).runs()[0], None, progress=False)
    assert forks == []


def _diverges():
    raise Diverged("eval/kl_to_base became nan after 8 feedback events")


def test_what_the_copy_raises_is_raised_here_with_its_traceback():
    background = background_evaluation.BackgroundEvaluation()
    background.start(_diverges, 8)
    with pytest.raises(Diverged, match="became nan") as raised:
        background.collect()
    assert any("_diverges" in note and "at 8" in note for note in raised.value.__notes__)
    assert not background.pending


def test_a_copy_that_dies_is_reported_with_its_exit_code():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: os._exit(3), 16)
    with pytest.raises(background_evaluation.BackgroundEvaluationFailed, match="at 16 died with exit code 3"):
        background.collect()


def test_an_unwanted_copy_is_stopped():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: __import__("time").sleep(60), 0)
    process = background._in_flight.process
    background.close()
    assert not process.is_alive() and not background.pending


def test_the_result_comes_back_whole():
    background = background_evaluation.BackgroundEvaluation()
    background.start(lambda: ({"eval/personal_accuracy": 0.5}, 1.0, 0.25), 24)
    assert background.collect() == (24, ({"eval/personal_accuracy": 0.5}, 1.0, 0.25))
