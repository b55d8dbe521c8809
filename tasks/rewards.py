"""Reward components with TRL's reward signature, and the weighted total.

Each component is a pure function ``f(prompts, completions, **columns) -> list[float]`` where
``columns`` carries, per completion, the item's answer key: ``gold`` (the value),
``wanted_format`` (a format name or None for any), ``needs_search`` (the fact can only come from
the user). Components and their ranges:

- ``correctness``: 1 if the final answer's value is ``gold``, else 0.
- ``format``: 1 if the answer is well formed and in ``wanted_format`` (any format when None), else 0.
- ``tool_efficiency``: minus the number of wasted search calls: every call when searching was
  not needed (a world question, or the fact already in the prompt), repeated queries otherwise.
- ``search_cost``: minus the number of search calls (each call costs, useful or not).

The weighted total is ``sum(weights[c] * component[c])`` over the config's ``reward.weights``;
weights are non-negative, so the last two components only ever subtract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tasks import grammar
from tasks.registry import Registry

RewardFunction = Callable[..., list[float]]
REWARD_COMPONENTS: Registry[RewardFunction] = Registry("reward component")


def _fact_in_prompt(prompt: str, item: str, gold: str) -> bool:
    """Whether the asked personal fact is already written in the prompt (e.g. a retrieved memory)."""
    if not item.startswith("fact:"):
        return False
    attribute = item.split(":", 1)[1]
    return grammar.fact_line(grammar.USER_SUBJECT, attribute, gold) in grammar.normalize(prompt)


@REWARD_COMPONENTS.register("correctness")
def correctness(prompts: Sequence[str], completions: Sequence[str], gold: Sequence[str], **_) -> list[float]:
    return [float(grammar.parse_answer(c).value == g) for c, g in zip(completions, gold, strict=True)]


@REWARD_COMPONENTS.register("format")
def format_compliance(
    prompts: Sequence[str], completions: Sequence[str], wanted_format: Sequence[str | None], **_
) -> list[float]:
    scores = []
    for completion, wanted in zip(completions, wanted_format, strict=True):
        parsed = grammar.parse_answer(completion)
        scores.append(float(parsed.well_formed and (wanted is None or parsed.format == wanted)))
    return scores


def wasted_search_calls(prompt: str, completion: str, item: str, gold: str, needs_search: bool) -> int:
    """Search calls that bought nothing: all of them if none was needed, else the repeats."""
    queries = grammar.search_queries(completion)
    if not needs_search or _fact_in_prompt(prompt, item, gold):
        return len(queries)
    return len(queries) - len(set(queries))


@REWARD_COMPONENTS.register("tool_efficiency")
def tool_efficiency(
    prompts: Sequence[str],
    completions: Sequence[str],
    item: Sequence[str],
    gold: Sequence[str],
    needs_search: Sequence[bool],
    **_,
) -> list[float]:
    return [
        -float(wasted_search_calls(p, c, i, g, n))
        for p, c, i, g, n in zip(prompts, completions, item, gold, needs_search, strict=True)
    ]


@REWARD_COMPONENTS.register("search_cost")
def search_cost(prompts: Sequence[str], completions: Sequence[str], **_) -> list[float]:
    return [-float(len(grammar.search_queries(c))) for c in completions]


def score(
    prompts: Sequence[str],
    completions: Sequence[str],
    weights: Mapping[str, float],
    **columns,
) -> tuple[dict[str, list[float]], list[float]]:
    """Every registered component and the weighted total, per completion.

    ``weights`` maps component name to its non-negative weight; components without a weight
    are still computed (and logged) but count zero in the total.
    """
    components = {name: fn(prompts, completions, **columns) for name, fn in REWARD_COMPONENTS.items()}
    total = [
        sum(weights.get(name, 0.0) * values[i] for name, values in components.items())
        for i in range(len(completions))
    ]
    return components, total
