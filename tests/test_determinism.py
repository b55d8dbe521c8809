"""Same seed, same streams and evaluation items for every paradigm; same seed twice, same metrics."""

import mlflow

from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.seeding import seed_everything
from experiments.tracking import Tracker
from tasks.suites import SUITES, TaskOptions
from tests.conftest import SMOKE, TINY

NOISY = {"cost/wall_seconds", "cost/peak_rss_bytes"}


def test_streams_and_eval_sets_depend_only_on_suite_and_seed():
    options = TaskOptions()
    for suite in SUITES.names():
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


def _histories(client, run_id):
    run = client.get_run(run_id)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
        if key not in NOISY
    }


def test_same_config_and_seed_give_identical_metrics(tracking_uri, tiny_base):
    experiment = load_experiment(SMOKE, [TINY])
    first = run_experiment(experiment, Tracker(tracking_uri), progress=False)[0]
    second = run_experiment(experiment, Tracker(tracking_uri), progress=False)[0]
    client = mlflow.MlflowClient(tracking_uri)
    assert _histories(client, first.run_id) == _histories(client, second.run_id)
    assert "train/reward" in _histories(client, first.run_id)
