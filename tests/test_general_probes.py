"""The two general probes: world knowledge no stream trains on, scored on the value alone
(``eval/general_knowledge``, what ``eval/forgetting`` is measured on), and explicit format requests on
the suite's own questions, scored on the format (``eval/instruction_following``, whose drop is
``eval/instruction_forgetting``); both measured against the untouched base, through either protocol.
The grammar protocol's runs are in tests/test_forgetting.py; the chat protocol's are here."""

import random

import pytest
import torch

from experiments.evaluation import Evaluator
from experiments.seeding import isolated_rng
from paradigms.agent import GenerationSettings
from paradigms.backbone import load_backbone
from paradigms.frozen import Frozen
from paradigms.session import Session
from paradigms.settings import FrozenSettings
from tasks import probes
from tasks.protocols import FORMATS
from tasks.protocols.chat import FORMAT_REQUESTS
from tasks.settings import TaskSettings
from tasks.suites import SUITES
from tasks.worlds import builtin_world, real_world
from tests.chat_model import save_tiny_chat_backbone, tiny_chat_model

WEIGHTS = {"correctness": 1.0, "format": 0.5, "tool_efficiency": 0.2, "search_cost": 0.1}


@pytest.mark.parametrize("world", [builtin_world(), real_world()], ids=["builtin", "real"])
def test_the_knowledge_probe_asks_plainly_about_facts_no_stream_asks(world):
    knowledge = probes.knowledge_probe(world)
    asked = {(i.query.subject, i.query.attribute) for i in knowledge}
    assert len(asked) == len(knowledge) >= 3 * len(world.kind_names)
    assert all(i.query.instruction is None and i.wanted_format is None for i in knowledge)
    assert not any(i.query.search_enabled or i.needs_search for i in knowledge)
    assert all(i.gold == world.value(i.query.subject, i.query.attribute) for i in knowledge)
    options = TaskSettings().with_world(world)
    for name in ("preferences", "default", "drift"):
        stream = SUITES[name].stream(0, 2000, options)
        streamed = {tuple(item.split(":")[1:]) for item in stream["item"] if item.startswith("world:")}
        assert streamed and not streamed & asked, name
    if world.name == "real":  # its probe split: never a stream's or the personal evaluation's fact
        held_out = {(e, k) for k, entities in world.held_out.items() for e in entities}
        assert asked == set(world.probe) and not asked & held_out


def test_the_instruction_probe_requests_a_format_other_than_the_users_habit():
    options = TaskSettings()
    suite = SUITES["default"]
    user = suite.user(3, options)
    instructions = suite.instruction_eval(3, options, user)
    habits = user.profile(0).formats
    world_items = [i for i in instructions if i.item.startswith("world:")]
    personal = [i for i in instructions if i.item.startswith("fact:")]
    assert world_items and personal
    for item in world_items:
        assert item.query.instruction in FORMATS and item.query.instruction != habits[item.query.attribute]
        assert item.wanted_format == item.query.instruction
    assert {i.query.instruction for i in personal} == set(FORMATS)


def _overfit(model, tokenizer, protocol, items, steps: int = 150) -> None:
    """Teach the tiny chat model to answer ``items`` right, in their wanted format (plain: no format)."""
    texts = [
        protocol.render_prompt(i.query, [], tokenizer)
        + protocol.answer_text(i.gold, i.wanted_format or "plain", i.query, tokenizer)
        for i in items
    ]
    batch = tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def test_through_the_chat_protocol_frozen_forgets_nothing_and_a_damaged_model_forgets_both(tmp_path):
    backbone = load_backbone(save_tiny_chat_backbone(tmp_path / "chat"), device="cpu")
    protocol, world = backbone.protocol, real_world()
    assert protocol.name == "chat"
    suite, options = SUITES["default"], TaskSettings().with_world(world)
    user = suite.user(0, options)
    knowledge = probes.knowledge_probe(world)[:4]
    instructions = [i for i in suite.instruction_eval(0, options, user) if i.item.startswith("world:")][:4]
    for item in knowledge:  # asked plainly: the chat prompt carries no format request
        prompt = protocol.render_prompt(item.query, [], backbone.tokenizer)
        assert world.kind(item.query.attribute).ask(item.query.subject) in prompt
        assert not any(request in prompt for request in FORMAT_REQUESTS.values())
    for item in instructions:
        prompt = protocol.render_prompt(item.query, [], backbone.tokenizer)
        assert FORMAT_REQUESTS[item.query.instruction] in prompt
    _overfit(backbone.model, backbone.tokenizer, protocol, [*knowledge, *instructions])

    greedy = GenerationSettings(max_new_tokens=24, temperature=0.0)
    session = Session(
        suite,
        user,
        suite.stream(0, 8, options),
        options,
        WEIGHTS,
        GenerationSettings(max_new_tokens=8),
        8,
        4,
        lambda report: None,
        protocol,
    )
    evaluator = Evaluator(
        session,
        suite.personal_eval(0, options).to_list()[:2],
        probes.general_probe(2, world=world),
        [],
        greedy,
        instructions=instructions,
        knowledge=knowledge,
    )
    with isolated_rng():
        base = evaluator.measure_base(backbone.model, backbone.tokenizer)
    assert base["eval/base_general_knowledge"] > 0 and base["eval/base_instruction_following"] > 0
    paradigm = Frozen(FrozenSettings(), backbone)
    paradigm.bind(session)
    random.seed(0)
    paradigm.train(session)  # answers the stream (sampling), learns nothing
    assert session.events == 8
    with isolated_rng():
        untouched = evaluator.evaluate(paradigm, session.phase)
    assert untouched["eval/forgetting"] == 0.0 and untouched["eval/instruction_forgetting"] == 0.0
    assert untouched["eval/general_knowledge"] == base["eval/base_general_knowledge"]

    backbone.model.load_state_dict(tiny_chat_model(backbone.tokenizer, seed=1).state_dict())  # damage
    with isolated_rng():
        damaged = evaluator.evaluate(paradigm, session.phase)
    assert damaged["eval/forgetting"] == pytest.approx(
        base["eval/base_general_knowledge"] - damaged["eval/general_knowledge"]
    )
    assert damaged["eval/forgetting"] > 0 and damaged["eval/instruction_forgetting"] > 0
