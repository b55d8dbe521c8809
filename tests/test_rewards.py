"""Every reward component against hand-computed values; the config's weights come from the registry."""

import subprocess
import sys

import mlflow
import pytest
from typer.testing import CliRunner

from experiments.cli import app
from experiments.config import RewardWeights
from tasks import grammar
from tasks.rewards import (
    REWARD_COMPONENTS,
    REWARD_WEIGHTS,
    correctness,
    format_compliance,
    score,
    search_cost,
    tool_efficiency,
)
from tests.conftest import SMOKE, TINY

PROMPT = "tools search ask my dog ?"
PROMPT_WITH_NOTE = "tools search note my dog rex . ask my dog ?"
SEARCHED = "<search> my dog </search> <result> my dog rex . </result> <answer> { answer : rex } </answer>"
TWICE = (
    "<search> my dog </search> <result> my dog rex . </result> <search> my dog </search> "
    "<result> my dog rex . </result> <answer> rex </answer>"
)
DIRECT = "<answer> - rex </answer>"
WRONG = "<answer> it is max . </answer>"
BROKEN = "<answer> { answer rex </answer>"
UNFINISHED = "<search> my dog </search>"


def test_correctness_reads_the_final_answer_value():
    completions = [SEARCHED, DIRECT, WRONG, BROKEN, UNFINISHED]
    assert correctness([PROMPT] * 5, completions, gold=["rex"] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_format_compliance_needs_the_wanted_format_or_any_well_formed_one():
    completions = [SEARCHED, DIRECT, WRONG, BROKEN, DIRECT]
    wanted = ["json", "json", None, None, None]
    # json ok; list where json wanted; any format ok; malformed; any format ok
    assert format_compliance([PROMPT] * 5, completions, wanted_format=wanted) == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_tool_efficiency_counts_wasted_calls():
    prompts = [PROMPT, PROMPT, PROMPT_WITH_NOTE, "tools search ask kalo color ?", PROMPT]
    completions = [
        SEARCHED,
        TWICE,
        SEARCHED,
        "<search> kalo color </search> <result> nothing </result>",
        DIRECT,
    ]
    items = ["fact:dog", "fact:dog", "fact:dog", "world:kalo:color", "fact:dog"]
    gold = ["rex", "rex", "rex", "red", "rex"]
    needs = [True, True, True, False, True]
    # needed: 0 wasted; needed but repeated once: 1; fact already in the prompt: 1; world question: 1; none: 0
    assert tool_efficiency(prompts, completions, item=items, gold=gold, needs_search=needs) == [
        0.0,
        -1.0,
        -1.0,
        -1.0,
        0.0,
    ]


def test_search_cost_charges_every_call():
    assert search_cost([PROMPT] * 3, [SEARCHED, TWICE, DIRECT]) == [-1.0, -2.0, 0.0]


def test_weighted_total_is_the_weighted_sum_of_components():
    weights = {"correctness": 1.0, "format": 0.5, "tool_efficiency": 0.2, "search_cost": 0.1}
    components, total = score(
        [PROMPT, PROMPT],
        [TWICE, WRONG],
        weights,
        gold=["rex", "rex"],
        wanted_format=["json", None],
        item=["fact:dog", "fact:dog"],
        needs_search=[True, True],
    )
    assert components["correctness"] == [1.0, 0.0]
    assert components["format"] == [0.0, 1.0]  # plain where json wanted; any format ok
    # TWICE: 1*1 + 0.5*0 + 0.2*(-1) + 0.1*(-2) = 0.6 ; WRONG: 0 + 0.5*1 + 0 + 0 = 0.5
    assert total == pytest.approx([0.6, 0.5])


def test_components_are_registered_under_their_config_names():
    assert set(REWARD_COMPONENTS.names()) == {"correctness", "format", "tool_efficiency", "search_cost"}


@pytest.mark.parametrize("fmt", grammar.FORMATS)
def test_every_format_round_trips_through_the_parser(fmt):
    parsed = grammar.parse_answer(grammar.answer("rex", fmt))
    assert (parsed.value, parsed.format, parsed.well_formed) == ("rex", fmt, True)


def test_the_config_weights_are_the_registered_components_with_their_defaults():
    fields = RewardWeights.model_fields
    assert list(fields) == REWARD_COMPONENTS.names() == list(REWARD_WEIGHTS)
    assert {name: field.default for name, field in fields.items()} == {
        name: weight.default for name, weight in REWARD_WEIGHTS.items()
    }
    assert all(fields[name].description for name in fields)


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        (
            {"correctness": 1.0, "format": 0.5, "tool_efficiency": 0.2, "serch_cost": 0.1},
            "unknown: serch_cost",
        ),
        ({"correctness": 1.0, "format": 0.5}, "missing: tool_efficiency, search_cost"),
    ],
)
def test_a_weight_for_no_component_or_a_component_without_weight_is_refused(weights, fragment):
    """A renamed component must not silently count zero in the total."""
    columns = {"gold": ["rex"], "wanted_format": [None], "item": ["fact:dog"], "needs_search": [True]}
    with pytest.raises(ValueError, match=fragment):
        score([PROMPT], [DIRECT], weights, **columns)


def test_an_unknown_weight_in_the_config_exits_2():
    result = CliRunner().invoke(app, ["config", "show", str(SMOKE), "--set", "reward.weights.brevity=0.5"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown key 'reward.weights.brevity': valid keys here: "
        + ", ".join(REWARD_COMPONENTS.names())
    ]


#: A process that adds a component the way a researcher would (one function, one registry line),
#: then runs the CLI: the config accepts its weight, the scorer counts it, the run logs it.
ADD_A_COMPONENT = """
import sys
from tasks.rewards import reward_component

@reward_component("brevity", weight=0.5, description="Weight of the cost of every character (-chars/100).")
def brevity(prompts, completions, **columns):
    return [-len(completion) / 100 for completion in completions]

from experiments.cli import main
sys.argv = ["harness", *sys.argv[1:]]
main()
"""


def test_a_component_added_with_one_registry_line_is_weighted_scored_and_logged(
    tmp_path, tracking_uri, tiny_base
):
    command = [sys.executable, "-c", ADD_A_COMPONENT, "run", str(SMOKE), "--set", TINY]
    done = subprocess.run(
        [*command, "--set", "reward.weights.brevity=0.25"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    (run,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert run.info.status == "FINISHED"
    assert run.data.params["reward.weights.brevity"] == "0.25"
    weights = {
        name: float(run.data.params[f"reward.weights.{name}"]) for name in [*REWARD_WEIGHTS, "brevity"]
    }
    history = {
        name: {m.step: m.value for m in client.get_metric_history(run.info.run_id, f"train/reward/{name}")}
        for name in weights
    }
    totals = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/reward")}
    assert totals and all(history["brevity"][step] < 0 for step in totals)  # every answer has characters
    for step, total in totals.items():  # the logged means are linear: the total weighs brevity too
        assert total == pytest.approx(sum(w * history[name][step] for name, w in weights.items()), abs=1e-9)
    unknown = subprocess.run(
        [*command, "--set", "reward.weights.brevty=0.25"], cwd=tmp_path, capture_output=True, text=True
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: unknown key 'reward.weights.brevty': did you mean 'reward.weights.brevity'?"
    ]


def test_components_only_need_no_weights():
    """An empty weights mapping (the evaluator's) gives every component and a zero total."""
    components, total = score(
        [PROMPT], [DIRECT], {}, gold=["rex"], wanted_format=[None], item=["fact:dog"], needs_search=[True]
    )
    assert set(components) == set(REWARD_COMPONENTS.names()) and total == [0.0]


def test_the_analysis_display_order_names_registered_components():
    """analysis/names.py orders the figures' components without importing the task code; a renamed
    component must be renamed there too (a new one needs nothing: figures show what was logged)."""
    from analysis.names import REWARD_COMPONENTS as DISPLAY_ORDER

    assert set(DISPLAY_ORDER) <= set(REWARD_COMPONENTS.names())
