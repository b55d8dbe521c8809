"""A GRPO step scores each response once, by the session's scorer; TRL's reward functions only read it."""

import pytest

import tasks.rewards as rewards
from experiments.config import load_experiment
from experiments.run import assemble
from paradigms.session import FeedbackReport
from tests.conftest import SMOKE, TINY

GRPO = {
    "full_ft": ["paradigm.name=full_ft"],
    "adapter": ["paradigm.name=adapter"],
    "hybrid": ["paradigm.name=hybrid"],
}


@pytest.mark.parametrize("overrides", GRPO.values(), ids=GRPO.keys())
def test_each_grpo_response_is_scored_once(overrides, tiny_base, monkeypatch):
    config = load_experiment(
        SMOKE,
        [TINY, *overrides, "algorithm.name=grpo", "algorithm.group_size=2", "budget.feedback_events=24"],
    ).runs()[0]
    parts = assemble(config, progress=False)  # (the base's general probe is scored here, before counting)
    reports: list[FeedbackReport] = []
    parts.session.on_feedback = reports.append  # no evaluations: only training scores
    scored: list[int] = []  # completions per call of the scorer
    score = rewards.score

    def counted_score(prompts, completions, weights, **columns):
        scored.append(len(completions))
        return score(prompts, completions, weights, **columns)

    monkeypatch.setattr(rewards, "score", counted_score)
    components: dict[str, int] = {}  # completions each reward component was computed for
    for name in rewards.REWARD_COMPONENTS.names():
        function = rewards.REWARD_COMPONENTS[name]

        def counted(prompts, completions, _name=name, _function=function, **columns):
            components[_name] = components.get(_name, 0) + len(completions)
            return _function(prompts, completions, **columns)

        monkeypatch.setitem(rewards.REWARD_COMPONENTS._entries, name, counted)
    parts.paradigm.train(parts.session)
    events = parts.session.events
    steps = [len(r.interaction.episodes) for r in reports]
    assert events == 24 and len(steps) == 3  # 3 optimizer steps of 4 queries x 2 responses
    assert scored == steps  # one scorer call per step, over exactly that step's responses
    assert components == dict.fromkeys(rewards.REWARD_COMPONENTS.names(), events)
