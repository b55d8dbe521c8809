"""The chat protocol on a tiny chat model built here: rendering, tool calls, masking, free-text scoring."""

import pytest
import torch

from paradigms.agent import GenerationSettings, rollout
from tasks import rewards
from tasks.items import Query
from tasks.protocols import PROTOCOLS, Statement
from tasks.protocols.chat import NOTES_FOOTER, NOTES_HEADER, TOOL_INSTRUCTIONS
from tasks.search import SearchTool
from tests.chat_model import CHATML, chat_tokenizer, tiny_chat_model

CHAT = PROTOCOLS["chat"]
DOG = Query("ask my dog ?", True)
CAPITAL = Query("ask Japan capital ?", False, "json", "Japan", "capital")
CAPITALS = ("Tokyo", "Rome", "Paris", "Lima", "Brasilia", "Buenos Aires")
DOGS = ("rex", "max", "bella", "luna", "milo")


@pytest.fixture(scope="module")
def tokenizer():
    return chat_tokenizer()


def test_prompt_holds_tool_convention_notes_question_and_format_request(tokenizer):
    note = CHAT.note(Statement("my", "city", "lima"))
    prompt = CHAT.render_prompt(DOG, [note], tokenizer)
    system, user = prompt.split("<|im_start|>user\n")
    assert system.startswith("<|im_start|>system\n") and TOOL_INSTRUCTIONS in system
    assert f"{NOTES_HEADER} The user lives in Lima. {NOTES_FOOTER}" in system
    assert user == "What is the name of my dog?<|im_end|>\n<|im_start|>assistant\n"
    asked = CHAT.render_prompt(CAPITAL, [], tokenizer)
    assert 'What is the capital of Japan? Answer as a JSON object with the key "answer".' in asked
    assert "search" not in asked  # no tool offered, nothing to say: the template's default system message
    assert "You are a helpful assistant." in asked


def test_a_template_that_declares_tools_gets_the_tool_its_own_way(tokenizer):
    declaring = chat_tokenizer()
    declaring.chat_template = "{% if tools %}Tools: {{ tools | tojson }}\n{% endif %}" + CHATML
    prompt = CHAT.render_prompt(DOG, [], declaring)
    assert prompt.startswith('Tools: [{"type": "function", "function": {"name": "search"')
    assert TOOL_INSTRUCTIONS not in prompt
    dropping = chat_tokenizer()
    dropping.chat_template = "{% if tools %}You may use tools.\n{% endif %}" + CHATML
    with pytest.raises(ValueError, match="dropped the search tool"):
        CHAT.render_prompt(DOG, [], dropping)


def test_tool_calls_are_parsed_from_the_hermes_format():
    call = '<tool_call>{"name": "search", "arguments": {"query": "my  dog"}}</tool_call>'
    assert CHAT.parse_tool_call(call) == "my dog"
    assert CHAT.parse_tool_call("<tool_call>{not json}</tool_call>") == ""  # malformed: still a call
    # the only tool: SmolLM2 forced to call it names it after the question ("my_dog"); its query still counts
    assert (
        CHAT.parse_tool_call('<tool_call>{"name": "my_dog", "arguments": {"query": "my_dog"}}</tool_call>')
        == "my_dog"
    )
    assert CHAT.parse_tool_call('<tool_call>{"city": "New York"}</tool_call>') == ""
    transcript = f"{call}\n<tool_response>\nThe user's dog is called Rex.\n</tool_response>\nRex."
    assert CHAT.search_queries(transcript) == ["my dog"]
    assert CHAT.parse_answer(transcript, DOGS).value == "rex"  # the tool's words are not the answer


@pytest.fixture(scope="module")
def scripted(tokenizer):
    """A tiny chat model overfit to call the tool, then answer from its reply."""
    model = tiny_chat_model(tokenizer)
    tool = SearchTool.over([Statement("my", "dog", "rex")], CHAT, 1)
    prompt = CHAT.render_prompt(DOG, [], tokenizer)
    call = '<tool_call>{"name": "search", "arguments": {"query": "my dog"}}</tool_call>'
    turn = CHAT.tool_reply(tool("my dog"), tokenizer)
    text = prompt + call + turn + "Rex.<|im_end|>"
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(200):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tool, call, turn


def test_rollout_sends_the_result_back_as_a_masked_tool_message(tokenizer, scripted):
    model, tool, call, turn = scripted
    [episode] = rollout(
        model, tokenizer, [DOG], [tool], GenerationSettings(temperature=0.0, max_new_tokens=80), protocol=CHAT
    )
    assert episode.search_queries == ["my dog"]
    assert episode.tool_results == [["The user's dog is called Rex."]]
    masked = [t for t, keep in zip(episode.completion_ids, episode.env_mask, strict=True) if not keep]
    assert tokenizer.decode(masked) == turn  # exactly the template's tool turn, nothing the model wrote
    assert turn.startswith("<|im_end|>\n<|im_start|>tool\n") and turn.endswith("<|im_start|>assistant\n")
    agent = tokenizer.decode(
        [t for t, keep in zip(episode.completion_ids, episode.env_mask, strict=True) if keep]
    )
    assert agent == call + "Rex.<|im_end|>"
    assert episode.completion == (
        f"{call}\n<tool_response>\nThe user's dog is called Rex.\n</tool_response>\nRex."
    )
    scores, _ = rewards.score(
        [episode.prompt],
        [episode.completion],
        {},
        gold=["rex"],
        wanted_format=[None],
        item=["fact:dog"],
        needs_search=[True],
        candidates=[list(DOGS)],
        protocol=["chat"],
    )
    assert scores == {"correctness": [1.0], "format": [1.0], "tool_efficiency": [0.0], "search_cost": [-1.0]}


# Real outputs of the untouched SmolLM2-135M-Instruct (greedy) and near misses: (answer, value, format).
REAL_ANSWERS = [
    ("The capital of Japan is Tokyo.", "Tokyo", "sentence"),
    ('{\n  "answer": "The capital of Japan is Tokyo."\n}', "Tokyo", "json"),
    ('{\n  "answer": "Italy"\n}', None, "json"),  # right format, no capital named
    ("1. Tokyo\n2. Kyoto\n3. Nara\n4. Shinjuku", "Tokyo", None),  # a numbered list is not a bulleted one
    ("- Rome", "Rome", "list"),
    ("- The capital of Japan is Tokyo.", "Tokyo", "list"),
    ("The answer is: Japan.", None, "sentence"),
    ('{"name": "Italy", "description": "The capital of Italy is Rome.", "answer": "Italy"}', "Rome", None),
    ("The capital of Peru is Lima. Lima is a beautiful city with a rich history.", "Lima", None),
    ("Tokyo", "Tokyo", "plain"),
    ("tokyo.", "Tokyo", "plain"),
    ("Brasília", "Brasilia", "plain"),  # accents do not matter
    ("Tokio", None, "plain"),  # a near miss names no candidate
    ('```json\n{"answer": "Lima"}\n```', "Lima", "json"),
]


@pytest.mark.parametrize(("answer", "value", "fmt"), REAL_ANSWERS)
def test_free_text_answers_are_scored_by_value_and_whole_format(answer, value, fmt):
    parsed = CHAT.parse_answer(answer, CAPITALS)
    assert (parsed.value, parsed.format, parsed.well_formed) == (
        value,
        fmt,
        True,
    )  # an answer, whatever its form


@pytest.mark.parametrize(
    "hack",
    [
        "Tokyo or Rome",  # hedging between candidates
        "- Tokyo\n- Rome\n- Paris",  # a list of every capital it knows
        "The capital is Tokyo, not Lima.",
        '{"answer": "Tokyo, Rome"}',
    ],
)
def test_naming_another_candidate_earns_no_credit(hack):
    assert CHAT.parse_answer(hack, CAPITALS).value is None


@pytest.mark.parametrize(
    "padded",
    [
        'Tokyo\n- Tokyo\n{"answer": "Tokyo"}',  # every format at once
        "Tokyo. The capital of Japan is Tokyo.",  # a bare value and a sentence
        '{"answer": "Tokyo"}\nThe capital of Japan is Tokyo.',
        '{"answer": "Tokyo", "format": "json"}',  # more than the one key
    ],
)
def test_padding_an_answer_to_hit_a_format_matches_no_format(padded):
    assert CHAT.parse_answer(padded, CAPITALS).format is None


def test_with_no_format_wanted_any_answer_complies_but_no_answer_does_not():
    columns = {"wanted_format": [None, None, "list"], "protocol": ["chat"] * 3}
    completions = ["Luna is a name of a fictional dog. She is lovely.", "", "Luna is my dog."]
    assert rewards.format_compliance(["p"] * 3, completions, **columns) == [1.0, 0.0, 0.0]


def test_reward_components_read_chat_transcripts():
    completions = ["The capital of Japan is Tokyo.", "- Tokyo\n- Rome", '{"answer": "Tokyo"}']
    scores, total = rewards.score(
        ["p"] * 3,
        completions,
        {"correctness": 1.0, "format": 0.5, "tool_efficiency": 0.0, "search_cost": 0.0},
        gold=["Tokyo"] * 3,
        wanted_format=["json"] * 3,
        item=["world:Japan:capital"] * 3,
        needs_search=[False] * 3,
        candidates=[list(CAPITALS)] * 3,
        protocol=["chat"] * 3,
    )
    assert scores["correctness"] == [1.0, 0.0, 1.0]
    assert scores["format"] == [0.0, 0.0, 1.0]
    assert total == [1.0, 0.0, 1.5]


def test_notes_corrections_and_lessons_are_read_back_as_statements(tokenizer):
    for statement in (Statement("my", "dog", "rex"), Statement("format", "capital", "list")):
        assert CHAT.note_statement(CHAT.note(statement)) == statement
    assert CHAT.note_statement("The capital of Peru is Lima.") == Statement("Peru", "capital", "Lima")
    lesson = "The assistant should remember that the user's dog is Rex."  # SmolLM2's own lesson
    assert CHAT.parse_lesson(lesson + " It is a good dog.") == lesson
    assert CHAT.note_statement(lesson) == Statement("my", "dog", "rex")
    assert CHAT.parse_lesson("The user asked a question about the capital of Japan.") is None
    prompt = CHAT.render_prompt(DOG, [CHAT.note(Statement("my", "dog", "rex"))], tokenizer)
    assert CHAT.fact_in_prompt(prompt, "dog", "rex") and not CHAT.fact_in_prompt(prompt, "dog", "max")


def test_search_matches_content_words_of_free_text():
    tool = SearchTool.over([Statement("my", "dog", "rex"), Statement("my", "city", "lima")], CHAT, 1)
    assert tool("my dog's name") == ["The user's dog is called Rex."]
    assert tool("where do I live") == ["The user lives in Lima."]
    assert tool("what is the weather") == []


def test_general_replay_for_a_chat_backbone_never_asks_an_evaluated_fact(tokenizer):
    from paradigms.rl.continual import ChatGeneralData
    from tasks.worlds import real_world

    world = real_world()
    evaluated = {(e, k) for k, entities in world.held_out.items() for e in entities} | set(world.probe)
    episodes = ChatGeneralData(tokenizer, 0, CHAT, world).draw(60)
    asked = set()
    for episode in episodes:
        for entity, kind in world.facts:
            if world.kind(kind).ask(entity) in episode.prompt:
                asked.add((entity, kind))
        assert episode.completion_ids and all(episode.env_mask)
        assert tokenizer.decode(episode.completion_ids).endswith("<|im_end|>")
    assert len(asked) >= 20 and not asked & evaluated
