"""The demo's comparison, small, on the tiny base, under two evaluation schedules: what every run
consumed from its stream (the questions it answered, and their digest) and its final forgetting on
both probes do not depend on the paradigm's accounting or on how often it was evaluated."""

import json
from pathlib import Path

import mlflow
import pytest

from experiments.config import load_experiment
from experiments.consumed import ConsumedStream
from experiments.run import STREAM_CONSUMED_FILE, run_experiment
from experiments.tracking import Tracker
from tasks.settings import TaskSettings
from tasks.suites import SUITES
from tests.conftest import ROOT, TINY

COMPARISON = ROOT / "experiments" / "comparison.yaml"
#: Past the default suite's phase change (at 36 events, where every schedule evaluates) and a batch more.
BUDGET = 72
SCHEDULES = (48, 24)


@pytest.fixture(scope="module")
def comparisons(tmp_path_factory, tiny_base) -> dict[int, dict[str, str]]:
    """``{"runs": {every: {run name: run id}}, "uris": {every: store URI}}``: the 12 arms at seed 0."""
    runs, uris = {}, {}
    for every in SCHEDULES:
        uri = f"sqlite:///{tmp_path_factory.mktemp(f'every{every}') / 'mlflow.db'}"
        experiment = load_experiment(
            COMPARISON,
            [
                TINY,
                "tuned=null",
                "seeds=[0]",
                f"budget.feedback_events={BUDGET}",
                f"evaluation.every={every}",
                "evaluation.general_items=12",
            ],
        )
        results = run_experiment(experiment, Tracker(uri), progress=False)
        assert all(r.status == "FINISHED" for r in results)
        runs[every], uris[every] = {r.name: r.run_id for r in results}, uri
    return {"runs": runs, "uris": uris}


def _final(client, run_id: str, metric: str) -> float:
    return client.get_metric_history(run_id, metric)[-1].value


def test_final_forgetting_on_both_probes_is_the_same_whether_evaluated_every_48_or_24(comparisons):
    rarely, often = (comparisons["runs"][e] for e in SCHEDULES)
    assert set(rarely) == set(often) and len(rarely) == 12
    clients = {e: mlflow.MlflowClient(comparisons["uris"][e]) for e in SCHEDULES}
    moved = evaluated_more = 0
    for name in rarely:
        for metric in ("eval/forgetting", "eval/instruction_forgetting"):
            final = [_final(clients[e], comparisons["runs"][e][name], metric) for e in SCHEDULES]
            assert final[0] == final[1], (name, metric, final)
            moved += final[0] != 0
        steps = [
            [m.step for m in clients[e].get_metric_history(comparisons["runs"][e][name], "eval/forgetting")]
            for e in SCHEDULES
        ]
        assert set(steps[0]) <= set(steps[1]), (name, steps)
        evaluated_more += len(steps[1]) > len(steps[0])
    assert evaluated_more >= 4  # every arm answering one question per event evaluated more often at 24
    assert moved > 0  # some run's drop is not 0, so the equality compares something


def _consumed(client, run_id: str, directory: Path) -> dict:
    path = client.download_artifacts(run_id, STREAM_CONSUMED_FILE, str(directory))
    return json.loads(Path(path).read_text(encoding="utf-8"))


def test_every_paradigm_consumed_the_same_questions_in_the_same_order(comparisons, tmp_path):
    """The digest of what each run answered equals the stream's own prefix of that many questions, so
    every paradigm at equal user questions (at equal events, when it answers each question once)
    answered exactly the same items."""
    options = TaskSettings()
    suite = SUITES["default"]
    user = suite.user(0, options)
    prefix = ConsumedStream()
    expected = {0: prefix.digest}
    for questions, row in enumerate(suite.stream(0, BUDGET, options), start=1):
        prefix.add([suite.resolve(row, user, 0)])
        expected[questions] = prefix.digest
    client = mlflow.MlflowClient(comparisons["uris"][24])
    at_events: dict[int, set[str]] = {}
    grouped = set()
    for name, run_id in comparisons["runs"][24].items():
        record = _consumed(client, run_id, tmp_path / name)
        logged = {m.step: m.value for m in client.get_metric_history(run_id, "cost/user_questions")}
        assert [m["events"] for m in record["evaluations"]] == sorted(logged), name
        for mark in record["evaluations"]:
            assert mark["user_questions"] * record["group_size"] == mark["events"], (name, mark)
            assert logged[mark["events"]] == mark["user_questions"], (name, mark)
            assert mark["digest"] == expected[mark["user_questions"]], (name, mark)
            if record["group_size"] == 1:
                at_events.setdefault(mark["events"], set()).add(mark["digest"])
        if record["group_size"] > 1:
            grouped.add(name)
    assert grouped and {"frozen-default-s0", "memory-default-s0"} <= set(comparisons["runs"][24]) - grouped
    assert BUDGET in at_events and all(len(digests) == 1 for digests in at_events.values()), at_events
