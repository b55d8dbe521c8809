"""Reward components with TRL's reward signature, and the weighted total.

Each component is a pure function ``f(prompts, completions, **columns) -> list[float]`` where
``columns`` carries, per completion, the item's answer key: ``gold`` (the value),
``wanted_format`` (a format name or None for any), ``needs_search`` (the fact can only come from
the user), ``candidates`` (every plausible value; free-text answers naming another one besides the
gold earn nothing) and ``protocol`` (the name of the protocol the completion is written in, which
parses it; ``grammar`` when absent). Components and their ranges:

- ``correctness``: 1 if the final answer's value is ``gold``, else 0.
- ``format``: 1 if the answer is well formed and in ``wanted_format`` (any format when None), else 0.
- ``tool_efficiency``: minus the number of wasted search calls: every call when searching was
  not needed (a world question, or the fact already in the prompt), repeated queries otherwise.
- ``search_cost``: minus the number of search calls (each call costs, useful or not).

The weighted total is ``sum(weights[c] * component[c])`` over the config's ``reward.weights``;
weights are non-negative, so the last two components only ever subtract.

Adding a component is one function and one registry line, ``@reward_component(name, weight=...,
description=...)``: the config's ``reward.weights`` section is generated from :data:`REWARD_WEIGHTS`
(``experiments.config.RewardWeights``), the run logs ``train/reward/<name>``, and the analysis
reads the components it finds logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tasks.protocols import PROTOCOLS, Protocol
from tasks.registry import Registry

RewardFunction = Callable[..., list[float]]
REWARD_COMPONENTS: Registry[RewardFunction] = Registry("reward component")


@dataclass(frozen=True)
class RewardWeight:
    """A component's weight in the total: its default and what it weighs (the config field's help)."""

    default: float
    description: str


#: Component name -> its weight, in registration order; ``reward.weights`` is generated from it.
REWARD_WEIGHTS: dict[str, RewardWeight] = {}


def reward_component(
    name: str, weight: float, description: str
) -> Callable[[RewardFunction], RewardFunction]:
    """Register a component under ``name`` with its default ``weight`` (non-negative) and the
    ``description`` of that weight; ``reward.weights.<name>`` becomes a config field."""
    if weight < 0:
        raise ValueError(f"reward component {name!r}: the default weight {weight} must be non-negative")

    def add(function: RewardFunction) -> RewardFunction:
        REWARD_COMPONENTS.add(name, function)  # refuses a duplicate name
        REWARD_WEIGHTS[name] = RewardWeight(weight, description)
        return function

    return add


def _protocols(columns: Mapping, n: int) -> list[Protocol]:
    """The protocol of each completion (the ``protocol`` column; grammar when there is none)."""
    names = columns.get("protocol") or ["grammar"] * n
    return [PROTOCOLS[name] for name in names]


def _candidates(columns: Mapping, n: int) -> list[Sequence[str]]:
    return columns.get("candidates") or [()] * n


def _fact_in_prompt(protocol: Protocol, prompt: str, item: str, gold: str) -> bool:
    """Whether the asked personal fact is already written in the prompt (e.g. a retrieved memory)."""
    if not item.startswith("fact:"):
        return False
    return protocol.fact_in_prompt(prompt, item.split(":", 1)[1], gold)


@reward_component("correctness", weight=1.0, description="Weight of answering the right value (0/1).")
def correctness(
    prompts: Sequence[str], completions: Sequence[str], gold: Sequence[str], **columns
) -> list[float]:
    n = len(completions)
    return [
        float(p.parse_answer(c, cands).value == g)
        for p, c, g, cands in zip(
            _protocols(columns, n), completions, gold, _candidates(columns, n), strict=True
        )
    ]


@reward_component(
    "format", weight=0.5, description="Weight of a well-formed answer in the wanted format (0/1)."
)
def format_compliance(
    prompts: Sequence[str], completions: Sequence[str], wanted_format: Sequence[str | None], **columns
) -> list[float]:
    scores = []
    for protocol, completion, wanted in zip(
        _protocols(columns, len(completions)), completions, wanted_format, strict=True
    ):
        parsed = protocol.parse_answer(completion)
        scores.append(float(parsed.well_formed and (wanted is None or parsed.format == wanted)))
    return scores


def wasted_search_calls(
    prompt: str, completion: str, item: str, gold: str, needs_search: bool, protocol: Protocol | None = None
) -> int:
    """Search calls that bought nothing: all of them if none was needed, else the repeats."""
    protocol = protocol or PROTOCOLS["grammar"]
    queries = protocol.search_queries(completion)
    if not needs_search or _fact_in_prompt(protocol, prompt, item, gold):
        return len(queries)
    return len(queries) - len(set(queries))


@reward_component(
    "tool_efficiency", weight=0.2, description="Weight of the penalty for wasted searches (-calls)."
)
def tool_efficiency(
    prompts: Sequence[str],
    completions: Sequence[str],
    item: Sequence[str],
    gold: Sequence[str],
    needs_search: Sequence[bool],
    **columns,
) -> list[float]:
    protocols = _protocols(columns, len(completions))
    return [
        -float(wasted_search_calls(p, c, i, g, n, protocol))
        for p, c, i, g, n, protocol in zip(
            prompts, completions, item, gold, needs_search, protocols, strict=True
        )
    ]


@reward_component("search_cost", weight=0.1, description="Weight of the cost of every search call (-calls).")
def search_cost(prompts: Sequence[str], completions: Sequence[str], **columns) -> list[float]:
    protocols = _protocols(columns, len(completions))
    return [-float(len(p.search_queries(c))) for p, c in zip(protocols, completions, strict=True)]


def score(
    prompts: Sequence[str],
    completions: Sequence[str],
    weights: Mapping[str, float],
    **columns,
) -> tuple[dict[str, list[float]], list[float]]:
    """Every registered component and the weighted total, per completion.

    ``weights`` maps every registered component's name to its non-negative weight (the config's
    ``reward.weights``), or is empty when only the components are wanted (the total is then 0).
    A missing or unknown name is a ValueError, never a weight of zero: a renamed component must
    not silently drop out of the total.
    """
    check_weights(weights)
    components = {name: fn(prompts, completions, **columns) for name, fn in REWARD_COMPONENTS.items()}
    total = [
        sum(weights[name] * values[i] for name, values in components.items()) if weights else 0.0
        for i in range(len(completions))
    ]
    return components, total


def check_weights(weights: Mapping[str, float]) -> None:
    """ValueError unless ``weights`` is empty or names exactly the registered components."""
    if not weights:
        return
    names = REWARD_COMPONENTS.names()
    unknown = sorted(set(weights) - set(names))
    missing = [name for name in names if name not in weights]
    if unknown or missing:
        raise ValueError(
            f"reward weights must name every reward component ({', '.join(names)}); "
            f"unknown: {', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'}"
        )
