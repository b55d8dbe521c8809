"""The real builtin base: its competence bars, its room to learn, and the two controls on it (slow)."""

import json
from collections import Counter

import mlflow
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from experiments.base import read_competence
from experiments.cli import app
from experiments.config import load_experiment
from experiments.run import run_experiment
from experiments.tracking import Tracker
from paradigms.agent import GenerationSettings, rollout
from tasks import grammar, probes
from tasks.items import Query
from tasks.world import USER_ATTRIBUTES
from tests.conftest import SMOKE

pytestmark = pytest.mark.slow


def test_competence_bars(real_base):
    figures = read_competence(real_base)
    assert figures["general_accuracy"] >= 0.9
    assert figures["context_reading_accuracy"] >= 0.9
    assert figures["search_call_rate"] >= 0.8
    assert figures["needless_search_rate"] <= 0.1  # it knows world facts: no search for them
    assert figures["format_following"] >= 0.9
    result = CliRunner().invoke(app, ["base", "info"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["competence"] == figures


@pytest.fixture(scope="module")
def base_model(real_base):
    return AutoModelForCausalLM.from_pretrained(real_base).eval(), AutoTokenizer.from_pretrained(real_base)


def test_unprompted_format_choice_is_spread_over_the_formats(base_model):
    """Room to learn: with no instruction and no preference, every format is sampled often."""
    model, tokenizer = base_model
    items = probes.unprompted_format_probe(400)
    episodes = rollout(model, tokenizer, [i.query for i in items], [None] * 400, GenerationSettings(), None)
    shares = Counter(grammar.parse_answer(e.completion).format for e in episodes)
    for fmt in grammar.FORMATS:
        assert 0.1 <= shares[fmt] / 400 <= 0.6, shares


def test_without_search_a_personal_fact_is_a_guess_among_plausible_values(base_model):
    model, tokenizer = base_model
    episodes = rollout(
        model, tokenizer, [Query("ask my dog ?", False)] * 200, [None] * 200, GenerationSettings(), None
    )
    values = Counter(grammar.parse_answer(e.completion).value for e in episodes)
    plausible = sum(n for v, n in values.items() if v in USER_ATTRIBUTES["dog"])
    assert plausible / 200 >= 0.8  # it names a dog
    assert len([v for v in values if v in USER_ATTRIBUTES["dog"]]) >= 5  # and spreads its guesses
    assert max(values.values()) / 200 <= 0.5


def _final_metrics(tracking_uri, overrides):
    experiment = load_experiment(
        SMOKE,
        [
            "task.suite=user_facts",
            "budget.feedback_events=8",
            "evaluation.every=8",
            "seeds=[0, 1, 2]",
            *overrides,
        ],
    )
    run_experiment(experiment, Tracker(tracking_uri), progress=False)
    client = mlflow.MlflowClient(tracking_uri)
    runs = [
        r
        for r in client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    return [r.data.metrics for r in runs]


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def test_frozen_without_search_is_at_chance(tracking_uri, real_base):
    finals = _final_metrics(tracking_uri, ["paradigm.name=frozen", "task.search=false"])
    chance = 1 / len(USER_ATTRIBUTES["dog"])
    assert mean(m["eval/personal_accuracy"] for m in finals) <= chance + 0.15
    assert mean(m["eval/search_calls_per_query"] for m in finals) <= 0.05


def test_frozen_with_search_answers_and_pays_in_searches(tracking_uri, real_base):
    finals = _final_metrics(tracking_uri, ["paradigm.name=frozen"])
    assert mean(m["eval/personal_accuracy"] for m in finals) >= 0.8
    assert mean(m["eval/search_calls_per_query"] for m in finals) >= 0.8


def test_oracle_reaches_the_ceiling_without_searching(tracking_uri, real_base):
    finals = _final_metrics(tracking_uri, ["paradigm.name=oracle"])
    assert mean(m["eval/personal_accuracy"] for m in finals) >= 0.9
    assert mean(m["eval/search_calls_per_query"] for m in finals) == 0.0
