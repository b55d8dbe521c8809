"""``Session.interact_together``: several calls answered in one batched rollout give each call the
episodes and scores it gets alone, in its own phase's world; equal calls share their rows; the answer
cache keeps a request whole, so what it serves is what the same batch computes."""

from contextlib import nullcontext

import pytest

import paradigms.session as session_module
from experiments.config import load_experiment
from experiments.run import assemble
from paradigms.agent import GenerationSettings
from paradigms.session import Call
from tests.conftest import SMOKE, TINY

GREEDY = GenerationSettings(max_new_tokens=16, temperature=0.0)


def _setup():
    config = load_experiment(SMOKE, [TINY, "task.suite=drift"]).runs()[0]
    parts = assemble(config, progress=False)
    session = parts.session
    personal = [session.resolve(row) for row in parts.personal_eval.to_list()[:8]]
    last = session.suite.n_phases - 1
    changed = parts.evaluator.updated[last][:6]  # values the user changed by the last phase
    assert changed
    note = [session.protocol.note(session.user.profile(0).statements()[0])]
    calls = [
        Call(personal),
        Call(parts.evaluator.general[:6], [note] * 6, search=False),
        Call(changed, decisions=["search"] * len(changed), phase=last),
        Call(personal[:3], decisions=["search", "answer", None]),
    ]
    return parts, session, calls


def _recorded_rollouts(monkeypatch) -> list[list]:
    """From now on in the test, each rollout's per-row tools (one list per rollout call), in order."""
    rollouts = []
    rollout = session_module.rollout

    def recorded(model, tokenizer, queries, tools, *args, **kwargs):
        rollouts.append(list(tools))
        return rollout(model, tokenizer, queries, tools, *args, **kwargs)

    monkeypatch.setattr(session_module, "rollout", recorded)
    return rollouts


def _rows(rollouts: list[list]) -> list[int]:
    """The rows each recorded rollout generated."""
    return [len(tools) for tools in rollouts]


def _alone(session, model, tokenizer, call: Call):
    with session.as_of(call.phase) if call.phase is not None else nullcontext():
        return session.interact(
            model,
            tokenizer,
            call.items,
            call.contexts,
            settings=GREEDY,
            search=call.search,
            decisions=call.decisions,
        )


def _view(interaction):
    return (
        [
            (e.completion_ids, e.env_mask, e.completion, e.search_queries, e.tool_results)
            for e in interaction.episodes
        ],
        interaction.components,
        interaction.rewards,
        interaction.phase,
    )


def test_calls_answered_together_are_answered_as_alone(tiny_base, monkeypatch):
    parts, session, calls = _setup()
    session.answers = None
    model, tokenizer = parts.paradigm.model, parts.paradigm.tokenizer
    rollouts = _recorded_rollouts(monkeypatch)
    together = session.interact_together(model, tokenizer, calls, GREEDY)
    assert len(rollouts) == 1 and len(rollouts[0]) == sum(len(c.items) for c in calls)  # one rollout
    alone = [_alone(session, model, tokenizer, call) for call in calls]
    assert [_view(i) for i in together] == [_view(i) for i in alone]
    # each row searched its own call's world: the tool of the call's phase, none for the probe
    last = session.suite.n_phases - 1
    with session.as_of(last):
        then = session.tool()
    assert then != session.tool()
    tools = iter(rollouts[0])
    for call, tool in zip(calls, [session.tool(), None, then, session.tool()], strict=True):
        assert all(next(tools) == tool for _ in call.items)
    assert together[2].phase == last and together[0].phase == session.phase  # scored in it too
    assert together[3].episodes[0].search_calls  # the forced search happened


def test_a_request_is_cached_whole(tiny_base, monkeypatch):
    parts, session, calls = _setup()
    model, tokenizer = parts.paradigm.model, parts.paradigm.tokenizer
    rollouts = _recorded_rollouts(monkeypatch)
    cache = session.answers
    cache.hits = cache.misses = 0
    with session.fixed_weights():
        first = session.interact_together(model, tokenizer, calls[:2], GREEDY)
        assert (cache.hits, cache.misses) == (0, 1)
        _alone(session, model, tokenizer, calls[1])  # part of a stored request only: generated
        assert (cache.hits, cache.misses) == (0, 2)
        again = session.interact_together(model, tokenizer, calls[:2], GREEDY)
        assert (cache.hits, cache.misses) == (1, 2)
        session.interact_together(model, tokenizer, calls, GREEDY)  # another request: generated whole
        assert (cache.hits, cache.misses) == (1, 3)
    assert _rows(rollouts) == [14, 6, sum(len(c.items) for c in calls)]
    assert [_view(i) for i in again] == [_view(i) for i in first]


def test_equal_calls_share_their_rows(tiny_base, monkeypatch):
    """Two calls with the same prompts, notes, decisions and tool are generated once (each scored on its
    own, in its own phase); a call whose lengths disagree is refused."""
    parts, session, calls = _setup()
    session.answers = None
    model, tokenizer = parts.paradigm.model, parts.paradigm.tokenizer
    rollouts = _recorded_rollouts(monkeypatch)
    twice = [calls[0], calls[2], calls[0], calls[2]]
    answered = session.interact_together(model, tokenizer, twice, GREEDY)
    assert _rows(rollouts) == [len(calls[0].items) + len(calls[2].items)]
    assert _view(answered[2]) == _view(answered[0]) and _view(answered[3]) == _view(answered[1])
    assert answered[2].episodes[0] is not answered[0].episodes[0]  # copies, not shared objects
    wrong = Call(calls[0].items, decisions=["search"] * (len(calls[0].items) - 1))
    with pytest.raises(ValueError, match="decisions"):
        session.interact_together(model, tokenizer, [wrong, calls[2]], GREEDY)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["paradigm.name=memory"],
        ["paradigm.name=full_ft", "algorithm.name=grpo", "algorithm.group_size=2"],
    ],
    ids=["frozen", "memory", "full_ft-grpo"],
)
def test_an_evaluation_logs_the_same_metrics_answered_together_or_part_by_part(
    tiny_base, monkeypatch, overrides
):
    """The evaluator's two ways (``parts_together``: one rollout, or one per part) give equal metrics,
    after a few feedback events (notes retrieved; weights moved, the KL to the base)."""
    config = load_experiment(
        SMOKE, [TINY, "task.suite=drift", "budget.feedback_events=8", *overrides]
    ).runs()[0]
    parts = assemble(config, progress=False)
    assert parts.evaluator.parts_together  # a small backbone answers its parts together
    parts.paradigm.train(parts.session)
    parts.session.answers = None
    rollouts = _recorded_rollouts(monkeypatch)
    measured, rows = {}, {}
    last = parts.session.suite.n_phases - 1
    for together in (True, False):
        parts.evaluator.parts_together = together
        rollouts.clear()
        metrics = parts.evaluator.evaluate(parts.paradigm, stream_phase=last)
        measured[together] = {
            k: v for k, v in metrics.items() if not any(t in k for t in ("seconds", "rss", "latency"))
        }
        rows[together] = _rows(rollouts)
    phases = sum(bool(items) for items in parts.evaluator.phases)
    # personal, probe (and without notes), instructions, each drift phase's items, the updated ones: one
    # rollout, or one each; together, updated items that are the last phase's call are generated once
    assert len(rows[False]) >= 3 + phases + 1
    updated = parts.evaluator.updated[last]
    same = [i.query for i in updated] == [i.query for i in parts.evaluator.phases[last]]
    assert rows[True] == [sum(rows[False]) - (len(updated) if same else 0)]
    assert measured[True] == measured[False]
    if "paradigm.name=full_ft" in overrides:
        assert measured[True]["eval/kl_to_base"] > 0  # the weights moved
