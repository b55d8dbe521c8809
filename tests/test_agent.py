"""The one rollout: the search-tool loop, the env mask and the token counts, on a real tiny model."""

import pytest
import torch

from paradigms.agent import GenerationSettings, rollout
from paradigms.builtin.build import new_model
from paradigms.builtin.recipe import TINY_RECIPE
from paradigms.builtin.tokenizer import build_tokenizer
from tasks import grammar
from tasks.items import Query
from tasks.search import SearchTool

QUESTION = "ask my dog ?"
PROMPT = "tools search note my city oslo . ask my dog ?"
TARGET = "<search> my dog </search> <result> my dog rex . </result> <answer> { answer : rex } </answer>"


@pytest.fixture(scope="module")
def scripted():
    """A tiny Llama overfit to one searching completion: a real model whose behaviour we know."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = new_model(TINY_RECIPE, tokenizer)
    ids = tokenizer(f"{PROMPT} {TARGET}", return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tokenizer


def test_search_loop_splices_tool_output_and_masks_it(scripted):
    model, tokenizer = scripted
    tool = SearchTool(("my dog rex .", "my city oslo ."), max_results=1)
    [episode] = rollout(
        model,
        tokenizer,
        [Query(QUESTION, True)],
        [tool],
        GenerationSettings(temperature=0.0),
        [["note my city oslo ."]],
    )
    assert episode.prompt == PROMPT
    assert episode.completion == TARGET
    assert episode.search_queries == ["my dog"]
    words = tokenizer.convert_ids_to_tokens(episode.completion_ids)
    tool_words = [w for w, keep in zip(words, episode.env_mask, strict=True) if not keep]
    assert tool_words == grammar.search_result(["my dog rex ."]).split()  # exactly the tool's reply
    agent_words = [w for w, keep in zip(words, episode.env_mask, strict=True) if keep]
    assert agent_words == [
        "<search>",
        "my",
        "dog",
        "</search>",
        "<answer>",
        "{",
        "answer",
        ":",
        "rex",
        "}",
        "</answer>",
    ]
    assert episode.tool_tokens == 6 and episode.agent_tokens == len(words) - 6
    assert episode.context_tokens == 5  # "note my city oslo ."


def test_tool_reply_comes_from_the_tool_not_the_model(scripted):
    model, tokenizer = scripted
    tool = SearchTool(("my dog max .",), max_results=1)
    [episode] = rollout(
        model,
        tokenizer,
        [Query(QUESTION, True)],
        [tool],
        GenerationSettings(temperature=0.0),
        [["note my city oslo ."]],
    )
    reply = [
        w
        for w, keep in zip(
            tokenizer.convert_ids_to_tokens(episode.completion_ids), episode.env_mask, strict=True
        )
        if not keep
    ]
    assert reply == grammar.search_result(["my dog max ."]).split()


def test_search_cap_refuses_calls_beyond_the_limit(scripted):
    model, tokenizer = scripted
    tool = SearchTool(("my dog rex .",), max_results=1)
    [episode] = rollout(
        model,
        tokenizer,
        [Query(QUESTION, True)],
        [tool],
        GenerationSettings(temperature=0.0, max_searches=0),
        [["note my city oslo ."]],
    )
    assert episode.search_calls == 1
    assert grammar.search_result([]) in episode.completion  # the call was answered with nothing


def test_groups_and_budget(scripted):
    model, tokenizer = scripted
    settings = GenerationSettings(temperature=1.0, max_new_tokens=5)
    episodes = rollout(
        model, tokenizer, [Query(QUESTION, True)] * 3, [None] * 3, settings, [["note my city oslo ."]] * 3
    )
    assert len(episodes) == 3
    assert all(len(e.completion_ids) <= 5 + 6 for e in episodes)  # budget counts agent and tool tokens
    assert all(len(e.env_mask) == len(e.completion_ids) for e in episodes)


def test_padding_is_never_sampled_so_no_completion_is_empty(scripted):
    """A pad token sampled first used to leave an empty completion (GRPO then crashed on it)."""
    model, tokenizer = scripted
    pad = tokenizer.pad_token_id
    assert pad != tokenizer.eos_token_id

    def prefer_pad(module, inputs, logits):  # (B, T, V): make padding by far the likeliest token
        logits[..., pad] += 50.0
        return logits

    hook = model.lm_head.register_forward_hook(prefer_pad)
    try:
        torch.manual_seed(0)
        episodes = rollout(
            model,
            tokenizer,
            [Query(QUESTION, True)] * 4,
            [None] * 4,
            GenerationSettings(temperature=1.0, max_new_tokens=8),
            [["note my city oslo ."]] * 4,
        )
    finally:
        hook.remove()
    assert all(e.completion_ids and pad not in e.completion_ids for e in episodes)
