"""The session's answer cache: evaluations log exactly the metrics they log without it, and a call whose
answers could differ (a changed weight, a new note, another tool, sampling) is never served from it."""

import copy

import mlflow
import pytest
import torch

import paradigms.answer_cache as answer_cache
import paradigms.session as session_module
from experiments.config import load_experiment
from experiments.run import assemble, execute
from experiments.tracking import Tracker
from paradigms.agent import GenerationSettings
from tests.chat_model import chat_tokenizer, tiny_chat_model
from tests.conftest import SMOKE, TINY, metric_histories

GREEDY = GenerationSettings(max_new_tokens=16, temperature=0.0)

# every kind of evaluation: no notes, a whole profile as notes, retrieved notes, weights that move (all
# of them or an adapter), both (hybrid), a learned tool policy deciding searches
PARADIGMS = {
    "frozen": [],
    "frozen-tool_policy": ["paradigm.tool_policy=qlearning"],
    "oracle": ["paradigm.name=oracle"],
    "memory": ["paradigm.name=memory"],
    "full_ft-grpo": ["paradigm.name=full_ft", "algorithm.name=grpo", "algorithm.group_size=2"],
    "adapter-grpo": ["paradigm.name=adapter", "algorithm.name=grpo", "algorithm.group_size=2"],
    "hybrid-grpo": ["paradigm.name=hybrid", "algorithm.name=grpo", "algorithm.group_size=2"],
}
#: Paradigms whose later evaluations are provably the same requests as their first (unchanged weights and
#: notes): the cache must have served some. (On the builtin base an evaluation is one request, so a
#: weight-changing run's is never an earlier one's within the run.)
SHARES = {"frozen", "oracle"}


@pytest.fixture(autouse=True)
def empty_store():
    """Each test starts with nothing stored in the process's shared answers (counts are per test)."""
    answer_cache.SHARED.clear()
    yield
    answer_cache.SHARED.clear()


def _run(config, tracker, answer_cache: bool, monkeypatch) -> tuple[str, int]:
    """A tracked run of ``config``; returns its run id and how many answers (rollout rows) the session
    generated."""
    calls = [0]
    rollout = session_module.rollout

    def counted(model, tokenizer, queries, *args, **kwargs):
        calls[0] += len(queries)
        return rollout(model, tokenizer, queries, *args, **kwargs)

    monkeypatch.setattr(session_module, "rollout", counted)
    run = tracker.start_run("answer-cache", f"{config.run_name()}-{answer_cache}")
    execute(config, run, progress=False, answer_cache=answer_cache)
    run.finish()
    monkeypatch.setattr(session_module, "rollout", rollout)
    return run.run_id, calls[0]


@pytest.mark.parametrize("overrides", PARADIGMS.values(), ids=PARADIGMS.keys())
def test_a_run_logs_the_same_metrics_with_and_without_the_cache(
    overrides, tracking_uri, tiny_base, monkeypatch
):
    config = load_experiment(SMOKE, [TINY, *overrides]).runs()[0]
    tracker = Tracker(tracking_uri)
    without, generated_without = _run(config, tracker, False, monkeypatch)
    cached, generated_with = _run(config, tracker, True, monkeypatch)
    client = mlflow.MlflowClient(tracking_uri)
    expected = metric_histories(client, without)
    assert "eval/general_accuracy" in expected and "eval/personal_accuracy" in expected
    assert metric_histories(client, cached) == expected
    name = next(k for k, v in PARADIGMS.items() if v == overrides)
    if name in SHARES:
        assert generated_with < generated_without, (generated_with, generated_without)
    else:
        assert generated_with <= generated_without


@pytest.mark.parametrize("together", [True, False], ids=["together", "part_by_part"])
def test_frozen_evaluates_once(tiny_base, together):
    """After a frozen run's first evaluation nothing is generated again. Answering part by part (a big
    backbone), its first evaluation's general probe and instruction items are the base's, from
    measure_base; answering together, an evaluation is one request, served only whole."""
    config = load_experiment(SMOKE, [TINY]).runs()[0]  # evaluations at 0, 8 and 16 events
    parts = assemble(config, progress=False)
    parts.evaluator.parts_together = together
    cache = parts.session.answers
    base_calls = 1 + bool(parts.evaluator.instructions)  # measure_base: the two probes, the instructions
    assert cache.misses == base_calls and cache.hits == 0
    with parts.session.fixed_weights():
        parts.evaluator.evaluate(parts.paradigm)
    first = cache.misses
    assert cache.hits == (0 if together else base_calls)
    assert first == base_calls + 1 or not together  # together: the whole evaluation, one request
    for _ in range(2):
        with parts.session.fixed_weights():
            parts.evaluator.evaluate(parts.paradigm)
    assert cache.misses == first


def _setup():
    config = load_experiment(SMOKE, [TINY, "task.suite=drift"]).runs()[0]
    parts = assemble(config, progress=False)
    session = parts.session
    items = [session.resolve(row) for row in parts.personal_eval.to_list()[:6]]
    return parts, session, items


def _answers(session, model, tokenizer, items, contexts=None, settings=GREEDY, search=True):
    interaction = session.interact(model, tokenizer, items, contexts, settings=settings, search=search)
    return [(e.completion_ids, e.env_mask, e.completion) for e in interaction.episodes]


def test_a_changed_weight_misses(tiny_base):
    parts, session, items = _setup()
    model, tokenizer = parts.paradigm.model, parts.paradigm.tokenizer
    cache = session.answers
    cache.hits = 0
    with session.fixed_weights():
        first = _answers(session, model, tokenizer, items)
        assert _answers(session, model, tokenizer, items) == first
    assert cache.hits == 1
    with torch.no_grad():  # through .data: no autograd version counter sees it, the digest does
        parameter = next(model.parameters())
        parameter.data.view(-1)[0] += 1e-3
    misses = cache.misses
    with session.fixed_weights():
        changed = _answers(session, model, tokenizer, items)
    assert cache.misses == misses + 1 and cache.hits == 1
    session.answers = None  # the same call without any cache: the same episodes
    assert _answers(session, model, tokenizer, items) == changed


def test_a_new_note_another_tool_or_sampling_misses(tiny_base):
    parts, session, items = _setup()
    model, tokenizer = parts.paradigm.model, parts.paradigm.tokenizer
    cache = session.answers
    notes = [[] for _ in items]
    cache.hits = cache.misses = 0  # (assembling the run answered the base's general probe)
    with session.fixed_weights():
        _answers(session, model, tokenizer, items, notes)
        _answers(session, model, tokenizer, items, [[] for _ in items])  # no notes = no notes: a hit
        assert (cache.hits, cache.misses) == (1, 1)
        noted = [list(n) for n in notes]
        noted[2] = [parts.session.protocol.note(session.user.profile(0).statements()[0])]
        _answers(session, model, tokenizer, items, noted)
        assert (cache.hits, cache.misses) == (1, 2)
        _answers(session, model, tokenizer, items, notes, search=False)  # no tool: another call
        assert (cache.hits, cache.misses) == (1, 3)
        now = session.tool().lines
        with session.as_of(session.suite.n_phases - 1):  # the last phase's knowledge base: another tool
            assert session.tool().lines != now
            _answers(session, model, tokenizer, items, notes)
        assert (cache.hits, cache.misses) == (1, 4)
        sampled = GenerationSettings(max_new_tokens=16, temperature=1.0)
        for _ in range(2):
            _answers(session, model, tokenizer, items, notes, settings=sampled)
        assert (cache.hits, cache.misses) == (1, 4)  # sampled calls are neither served nor counted
    _answers(session, model, tokenizer, items, notes)  # outside a block: generated, not counted
    assert (cache.hits, cache.misses) == (1, 4)


def test_blocks_do_not_nest(tiny_base):
    session = _setup()[1]
    with session.fixed_weights(), pytest.raises(RuntimeError, match="nest"), session.fixed_weights():
        pass


#: The paradigms that retrieve notes: memory, and hybrid's memory part (writing what every route sends it).
RETRIEVING = {
    "memory": ["paradigm.name=memory"],
    "hybrid": [
        "paradigm.name=hybrid",
        "algorithm.name=reinforce",
        "paradigm.route=both",
        "paradigm.memory.reflection=template",
    ],
}


@pytest.mark.parametrize("overrides", RETRIEVING.values(), ids=RETRIEVING.keys())
def test_an_evaluation_question_is_embedded_once(overrides, tiny_base, monkeypatch):
    """The evaluator's questions are embedded at the first evaluation that retrieves, never again; the
    notes retrieved are the ones a fresh embedding finds, and the reads add no retrieval latency (the
    stream's). The hybrid's memory part too (it once embedded them at every evaluation: the runner binds
    the session to the hybrid, not to its memory)."""
    config = load_experiment(SMOKE, [TINY, *overrides]).runs()[0]
    parts = assemble(config, progress=False)
    paradigm, session = parts.paradigm, parts.session
    memory = getattr(paradigm, "memory", paradigm)
    paradigm.train(session)  # fills the store
    assert len(memory.store) > 0 and memory.embedder.fixed
    embedded: list[str] = []
    embed = memory.embedder.embed

    def counted(texts):
        embedded.extend(texts)
        return embed(texts)

    monkeypatch.setattr(memory.embedder, "embed", counted)
    items = parts.evaluator.general
    latencies = list(memory.latencies_ms)  # the stream's retrievals'
    first = paradigm.context_for(items)
    questions = len({i.query.question for i in items})
    assert len(embedded) == questions and any(first)
    assert paradigm.context_for(items) == first and len(embedded) == questions
    session.answers = None  # without kept answers, every question is embedded again: the same notes
    assert paradigm.context_for(items) == first and len(embedded) == questions + len(items)
    assert memory.latencies_ms == latencies  # the evaluator's reads are measurement, not the user's cost


def test_runs_of_one_user_share_the_untouched_base_s_first_evaluation(tiny_base):
    """frozen, memory and full_ft start from the same base without notes: after a frozen run of a user, the
    other two generate nothing before their first update (the base's general probe and evaluation 0)."""
    frozen = load_experiment(SMOKE, [TINY]).runs()[0]
    execute(frozen, None, progress=False)
    for overrides in (["paradigm.name=memory"], PARADIGMS["full_ft-grpo"]):
        parts = assemble(load_experiment(SMOKE, [TINY, *overrides]).runs()[0], progress=False)
        with parts.session.fixed_weights():
            parts.evaluator.evaluate(parts.paradigm)
        assert parts.session.answers.misses == 0 and parts.session.answers.hits > 0
    other_user = load_experiment(SMOKE, [TINY, "seeds=[1]"]).runs()[0]
    parts = assemble(other_user, progress=False)
    with parts.session.fixed_weights():
        parts.evaluator.evaluate(parts.paradigm)
    assert parts.session.answers.misses > 0  # another user: other items and another search tool


def _lora(base, alpha: int):
    """A copy of ``base`` with a LoRA adapter (rank 4, ``alpha``, random B) on every ``q_proj``."""
    from peft import LoraConfig, get_peft_model

    settings = LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj"], init_lora_weights=False)
    return get_peft_model(copy.deepcopy(base), settings)


def test_the_digest_sees_what_computes_without_being_a_weight():
    """Two LoRA adapters with equal weights but another alpha, or an adapter switched off, compute other
    answers: their digests differ (the adapter state is part of it); the same model twice digests equal."""
    base = tiny_chat_model(chat_tokenizer())
    assert answer_cache.computation_digest(base) == answer_cache.computation_digest(base)
    first, second = _lora(base, 8), _lora(base, 16)
    second.load_state_dict(first.state_dict())
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    digest = answer_cache.computation_digest(first)
    assert answer_cache.computation_digest(second) != digest
    with first.disable_adapter():
        assert answer_cache.computation_digest(first) != digest
    assert answer_cache.computation_digest(first) == digest
    before = answer_cache.computation_digest(base)
    with torch.no_grad():
        base.lm_head.weight.data[0, 0] += 1.0  # through .data: no version counter sees it
    assert answer_cache.computation_digest(base) != before


def test_same_computation_compares_what_the_digest_digests_and_the_training_flags():
    """Equal when the digests are equal and every module is in the same mode; another weight, another LoRA
    alpha on equal weights, a PEFT wrapper or a module in training mode (its dropout draws) make them
    differ."""
    base = tiny_chat_model(chat_tokenizer())
    twin = copy.deepcopy(base)
    assert answer_cache.same_computation(base, twin) and answer_cache.same_computation(base, base)
    twin.train()
    assert not answer_cache.same_computation(base, twin)
    twin.eval()
    with torch.no_grad():
        twin.lm_head.weight.data[-1, -1] += 1.0  # through .data: no version counter sees it
    assert not answer_cache.same_computation(base, twin)
    assert answer_cache.computation_digest(base) != answer_cache.computation_digest(twin)
    first, second = _lora(base, 8).eval(), _lora(base, 16).eval()
    second.load_state_dict(first.state_dict())
    assert not answer_cache.same_computation(first, second)
    assert not answer_cache.same_computation(first, base)
    assert answer_cache.same_computation(first, copy.deepcopy(first))
