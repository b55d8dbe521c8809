"""``Session.interact_together``: several calls answered in one batched rollout give each call the
episodes and scores it gets alone, in its own phase's world; the answer cache keeps each call on its own."""

from contextlib import nullcontext

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
    rollouts = []
    rollout = session_module.rollout

    def counted(model, tokenizer, queries, tools, *args, **kwargs):
        rollouts.append(list(tools))
        return rollout(model, tokenizer, queries, tools, *args, **kwargs)

    monkeypatch.setattr(session_module, "rollout", counted)
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


def test_each_call_is_cached_on_its_own(tiny_base, monkeypatch):
    parts, session, calls = _setup()
    model, tokenizer = parts.paradigm.model, parts.paradigm.tokenizer
    rollouts = []
    rollout = session_module.rollout

    def counted(model, tokenizer, queries, *args, **kwargs):
        rollouts.append(len(queries))
        return rollout(model, tokenizer, queries, *args, **kwargs)

    monkeypatch.setattr(session_module, "rollout", counted)
    cache = session.answers
    cache.hits = cache.misses = 0
    with session.fixed_weights():
        first = session.interact_together(model, tokenizer, calls[:2], GREEDY)
        assert (cache.hits, cache.misses) == (0, 2)
        served = _alone(session, model, tokenizer, calls[1])  # stored on its own: a hit
        assert (cache.hits, cache.misses) == (1, 2) and _view(served) == _view(first[1])
        again = session.interact_together(model, tokenizer, calls, GREEDY)
        assert (cache.hits, cache.misses) == (3, 4)
    assert rollouts == [14, len(calls[2].items) + len(calls[3].items)]  # only the calls not stored
    assert [_view(i) for i in again[:2]] == [_view(i) for i in first]


def test_an_evaluation_logs_the_same_metrics_answered_together_or_part_by_part(tiny_base, monkeypatch):
    """The evaluator's two ways (``parts_together``: one rollout, or one per part) give equal metrics."""
    parts = assemble(load_experiment(SMOKE, [TINY, "task.suite=drift"]).runs()[0], progress=False)
    assert parts.evaluator.parts_together  # a small backbone answers its parts together
    parts.session.answers = None
    rollouts = []
    rollout = session_module.rollout

    def counted(model, tokenizer, queries, *args, **kwargs):
        rollouts.append(len(queries))
        return rollout(model, tokenizer, queries, *args, **kwargs)

    monkeypatch.setattr(session_module, "rollout", counted)
    measured, rows = {}, {}
    for together in (True, False):
        parts.evaluator.parts_together = together
        rollouts.clear()
        metrics = parts.evaluator.evaluate(parts.paradigm, stream_phase=parts.session.suite.n_phases - 1)
        measured[together] = {k: v for k, v in metrics.items() if "seconds" not in k and "rss" not in k}
        rows[together] = list(rollouts)
    phases = sum(bool(items) for items in parts.evaluator.phases)
    # personal, probe, instructions, each drift phase's items, the updated ones: one rollout or one each
    assert len(rows[True]) == 1 and len(rows[False]) == 3 + phases + 1
    assert rows[True] == [sum(rows[False])]
    assert measured[True] == measured[False]
