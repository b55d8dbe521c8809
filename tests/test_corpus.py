"""The builtin base's corpus: the per-kind needless-search habit a recipe can set."""

import re

import pytest

from paradigms.builtin.recipe import OVERSEARCH_RECIPE, BaseRecipe
from tasks.corpus import NEEDLESS_SEARCH, CorpusGenerator
from tasks.world import WORLD_ATTRIBUTES

_ASKED_KIND = re.compile(r"ask \S+ (\S+) \?")


def search_rates(generator: CorpusGenerator, n: int = 6000) -> dict[str, float]:
    """Per world question kind, the share of tool-offered questions whose completion opens with a search."""
    searched = {kind: [] for kind in WORLD_ATTRIBUTES}
    for _ in range(n):
        prompt, first, *_ = generator.example()
        if prompt.text.startswith("tools search"):
            kind = _ASKED_KIND.search(prompt.text).group(1)
            searched[kind].append(first.text.startswith("<search>"))
    return {kind: sum(flags) / len(flags) for kind, flags in searched.items()}


def test_each_kind_searches_needlessly_at_its_recipe_share():
    rates = search_rates(CorpusGenerator(seed=0, mixture={"world": 1.0}, needless_search={"home": 0.9}))
    assert rates["home"] == pytest.approx(0.9, abs=0.03)
    assert rates["color"] == pytest.approx(NEEDLESS_SEARCH, abs=0.03)
    assert rates["food"] == pytest.approx(NEEDLESS_SEARCH, abs=0.03)


def test_the_default_share_writes_the_same_corpus_as_naming_it():
    default = CorpusGenerator(seed=0)
    explicit = CorpusGenerator(seed=0, needless_search=BaseRecipe().needless_search)
    for _ in range(500):
        assert default.example() == explicit.example()


def test_the_oversearch_recipe_differs_from_the_default_only_in_its_home_habit():
    default, oversearch = BaseRecipe(), OVERSEARCH_RECIPE
    assert oversearch.needless_search == {**default.needless_search, "home": 0.9}
    assert {**oversearch.__dict__, "needless_search": None} == {**default.__dict__, "needless_search": None}
    assert oversearch.digest() != default.digest()


def test_an_unknown_question_kind_is_refused():
    with pytest.raises(ValueError, match="unknown question kinds"):
        CorpusGenerator(seed=0, needless_search={"weather": 0.5})
