"""Every reward component against hand-computed values."""

import pytest

from tasks import grammar
from tasks.rewards import (
    REWARD_COMPONENTS,
    correctness,
    format_compliance,
    score,
    search_cost,
    tool_efficiency,
)

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
