"""Greedy rounds that read the prompt prefix all rows share once give the episodes of a full prefill.

``paradigms.shared_prefix`` runs the model once over the prefix every row of a greedy round shares (a
chat template's system message and tool instructions) and starts the round from a cache holding it for
every row. Each case runs the rollout both ways from the same seed and requires the same token ids, env
masks, transcripts, tool calls and results, and that the shared way really fed the model fewer
positions (so a silent fallback to the full prefill cannot pass): on the tiny chat model overfit to
search twice (rows with and without notes, resumed tool rounds after the shared first one) and through
a LoRA wrapper of it. Sampled rounds and the builtin base's prompts, which share too little, keep the
full prefill.
"""

from functools import partial

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from paradigms import shared_prefix
from paradigms.agent import GenerationSettings
from tasks.items import Query
from tasks.protocols import Statement
from tests.rollout_ways import CHAT, NOTES, QUERIES, assert_same, both_ways, fed_positions

both = partial(both_ways, "share_prefix", fed_positions)
GREEDY = GenerationSettings(max_new_tokens=120, temperature=0.0, top_k=0, max_searches=2)


def chat_rollouts(model, tokenizer, tool, settings):
    """``both`` over 12 chat questions, with and without notes, every one offered the tool."""
    queries = [Query("ask my dog ?", True), Query("ask my city ?", True), Query("ask my dog ?", True)] * 4
    notes = [[], [CHAT.note(Statement("my", "city", "lima"))], []] * 4
    return both(model, tokenizer, queries, [tool] * 12, settings, 0, contexts=notes, protocol=CHAT)


def test_chat_prompts_read_their_shared_prefix_once(chat_twice):
    model, tokenizer, tool = chat_twice
    full, once, positions = chat_rollouts(model, tokenizer, tool, GREEDY)
    assert_same(full, once)
    assert max(e.search_calls for e in once) >= 2  # resumed rounds ran after the shared first one
    assert positions[True] < positions[False]


def test_a_lora_adapter_reads_the_prefix_once_too(chat_twice):
    """The adapter paradigm generates through PEFT's wrapper: the one-row pass goes through it."""
    model, tokenizer, tool = chat_twice
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    copy = type(model)(model.config)
    copy.load_state_dict(model.state_dict())  # the fixture's model stays unwrapped for the other tests
    wrapped = get_peft_model(copy, config).eval()
    full, once, positions = chat_rollouts(wrapped, tokenizer, tool, GREEDY)
    assert_same(full, once)
    assert positions[True] < positions[False]


def test_sampled_rounds_prefill_every_row(chat_twice):
    model, tokenizer, tool = chat_twice
    sampled = GenerationSettings(max_new_tokens=120, temperature=1.0, top_k=0, max_searches=2)
    full, once, positions = chat_rollouts(model, tokenizer, tool, sampled)
    assert_same(full, once)
    assert positions[True] == positions[False]


def test_the_builtin_base_keeps_its_full_prefill(tiny_base):
    model, tokenizer = (
        AutoModelForCausalLM.from_pretrained(tiny_base).eval(),
        AutoTokenizer.from_pretrained(tiny_base),
    )
    settings = GenerationSettings(max_new_tokens=32, temperature=0.0, top_k=0, max_searches=2)
    full, once, positions = both(model, tokenizer, QUERIES * 4, [None] * 12, settings, 0, contexts=NOTES * 4)
    assert_same(full, once)
    assert positions[True] == positions[False]


@pytest.mark.parametrize(
    ("sequences", "shared"),
    [
        ([[1, 2, 3, 4], [1, 2, 3, 5, 6]], 3),
        ([[1, 2, 3], [1, 2, 3], [1, 2, 3]], 2),  # identical rows keep one token to feed
        ([[7, 2, 3], [1, 2, 3]], 0),
        ([[1], [1, 2]], 0),
    ],
)
def test_shared_length(sequences, shared):
    assert shared_prefix.length(sequences) == shared


@pytest.mark.parametrize(
    ("sequences", "limit", "worth"),
    [
        ([[5, 6, 7, 8, 9], [5, 6, 7, 1]], None, 3),
        ([[5, 6, 7, 8, 9], [5, 6, 7, 1]], 2, 2),  # the KL's limit: the first agent position
        ([[5, 6, 7, 8, 9], [5, 6, 7, 8]], None, 3),  # the shorter keeps one token to feed
        ([[5, 6, 7, 8, 9]], None, 0),  # one row: nothing to share
        ([[5, 6, 1, 2, 3, 4, 5, 6, 7], [5, 6, 9]], None, 0),  # 2 of 9 columns: under MIN_FRACTION
        ([[5, 6, 1, 2, 3, 4, 5, 6, 7], [5, 6, 9]], 1, 0),
        ([[1, 2], [3, 2]], None, 0),
    ],
)
def test_worth_reading_once(sequences, limit, worth):
    assert shared_prefix.worth_reading_once(sequences, limit) == worth


def test_no_pass_for_one_row_or_too_short_a_prefix(chat_twice):
    model, _, _ = chat_twice
    calls = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        assert shared_prefix.carried(model, [[1, 2, 3, 4]], [0], "cpu") is None
        assert shared_prefix.carried(model, [[1, 2, 3, 4, 5], [1, 9, 9, 9, 9]], [0, 1], "cpu") is None
        made = shared_prefix.carried(model, [[1, 2, 3, 4, 5], [1, 2, 3, 4, 9, 9]], [3, 7], "cpu")
    finally:
        hook.remove()
    assert len(calls) == 1  # only the last had a prefix worth a pass
    assert made.cached == {3: 4, 7: 4} and made.rows == {3: 0, 7: 0} and made.starts == {3: 0, 7: 0}
    assert made.cache.get_seq_length() == 4
