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


def grpo_config(overrides: list[str], events: int):
    """The smoke config on the tiny base with GRPO in groups of 2, for ``events`` feedback events."""
    settings = ["algorithm.name=grpo", "algorithm.group_size=2", f"budget.feedback_events={events}"]
    return load_experiment(SMOKE, [TINY, *overrides, *settings]).runs()[0]


@pytest.mark.parametrize("overrides", GRPO.values(), ids=GRPO.keys())
def test_each_grpo_response_is_scored_once(overrides, tiny_base, monkeypatch):
    config = grpo_config(overrides, events=24)
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


def test_grpo_update_projects_only_the_completion_positions(tiny_base, monkeypatch):
    """TRL's fused LM head gets the completions' own positions only (not prompt or padding) on CPU, and
    TRL's switch is back as it was after training (``paradigms.rl.grpo.completion_positions_only``);
    the objects made before training are out of the collector's way meanwhile, and back after."""
    import gc

    import trl.trainer.utils as trl_utils

    parts = assemble(grpo_config(GRPO["adapter"], events=16), progress=False)
    reports: list[FeedbackReport] = []
    parts.session.on_feedback = reports.append
    projected: list[int] = []  # rows each call of the fused head projected
    frozen: list[int] = []  # objects the collector skipped meanwhile
    before = gc.get_freeze_count()
    head = trl_utils._ChunkedLogProbFunction

    class Counted:
        @staticmethod
        def apply(hidden, *args):
            projected.append(hidden.shape[0])
            frozen.append(gc.get_freeze_count())
            return head.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counted)
    decide = trl_utils._use_triton
    parts.paradigm.train(parts.session)
    completion_tokens = [sum(len(e.completion_ids) for e in r.interaction.episodes) for r in reports]
    assert len(reports) == 2 and projected  # 2 steps of 4 queries x 2 responses
    assert set(projected) <= set(completion_tokens), (projected, completion_tokens)
    assert trl_utils._use_triton is decide
    assert min(frozen) > before and gc.get_freeze_count() == before
