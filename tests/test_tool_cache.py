"""The tool loop resumed from the cache equals the tool loop that recomputes the prefix.

Both paths run on the same model with the same seed; every episode must come out with the same token
ids, env mask, transcript, tool calls and tool results, greedy and sampled, on the builtin tiny base
(forced and free search calls), on a tiny Llama overfit to search twice (three rounds, rows finishing
at different times, prompts of different lengths), and on the tiny chat model (the tool turn of a
chat template). Each case also checks that the cached path really fed the model fewer positions, so
a silent fallback to recomputation cannot pass for the cache.

Exactness rests on numerics: carried keys and values were computed in another batch shape than a
recomputing prefill computes them, and on CPU a matrix product's last bits can depend on that shape.
On the builtin tiny base the logits come out bit-identical here; on the real base they differ by
~1e-6 (``benchmarks/tool_loop.py`` measures how often that changes a token), far below any gap a
greedy or sampled choice turns on in these cases.
"""

from functools import partial

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, MistralConfig, MistralForCausalLM

from paradigms.agent import SEARCH, GenerationSettings
from tasks.items import Query
from tasks.protocols import Statement
from tasks.search import SearchTool
from tests.chat_model import chat_tokenizer
from tests.rollout_ways import (
    CHAT,
    NOTES,
    QUERIES,
    assert_same,
    both_ways,
    fed_positions,
    overfit_to_search_twice,
)

both_paths = partial(both_ways, "reuse_cache", fed_positions)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_builtin_tiny_base_same_episodes_with_and_without_recomputing(tiny, temperature):
    model, tokenizer = tiny
    tool = SearchTool(("my dog rex .", "my city oslo ."))
    queries, notes = QUERIES * 4, NOTES * 4
    settings = GenerationSettings(max_new_tokens=32, temperature=temperature, top_k=0, max_searches=2)
    searched = 0
    for seed in range(3):
        recomputed, cached, positions = both_paths(
            model,
            tokenizer,
            queries,
            [tool, tool, None] * 4,
            settings,
            seed,
            contexts=notes,
            decisions=[SEARCH, None, SEARCH, None] * 3,
        )
        assert_same(recomputed, cached)
        searched += sum(e.search_calls for e in cached)
        assert positions[True] < positions[False]
    assert searched >= 12  # the forced calls at least: the resumed rounds ran


def test_a_lora_adapter_resumes_from_the_cache_too(tiny_base):
    """The adapter paradigm generates through PEFT's wrapper: the cache goes through it."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    model = get_peft_model(base, config).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    tool = SearchTool(("my dog rex .", "my city oslo ."))
    settings = GenerationSettings(max_new_tokens=32, temperature=1.0, max_searches=2)
    recomputed, cached, positions = both_paths(
        model, tokenizer, QUERIES * 2, [tool] * 6, settings, 0, contexts=NOTES * 2, decisions=[SEARCH] * 6
    )
    assert_same(recomputed, cached)
    assert positions[True] < positions[False]


@pytest.mark.parametrize("temperature", [0.0, 1.0, 2.0])
def test_three_rounds_rows_of_different_lengths(twice, temperature):
    model, tokenizer = twice
    tool = SearchTool(("my dog rex .", "my city oslo ."), max_results=1)
    settings = GenerationSettings(max_new_tokens=40, temperature=temperature, top_k=0, max_searches=2)
    queries = [Query("ask my dog ?", True)] * 6 + [Query("ask my city ?", True)] * 2
    notes = [[], ["note my city oslo ."], ["note kalo color red .", "note my city oslo ."], []] * 2
    for seed in range(3):
        recomputed, cached, positions = both_paths(
            model, tokenizer, queries, [tool] * 7 + [None], settings, seed, contexts=notes
        )
        assert_same(recomputed, cached)
        assert max(e.search_calls for e in cached) >= 2  # a third round ran
        assert positions[True] < positions[False]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_chat_tool_turns_same_episodes_with_and_without_recomputing(chat_twice, temperature):
    model, tokenizer, tool = chat_twice
    queries = [Query("ask my dog ?", True), Query("ask my city ?", True), Query("ask my dog ?", True)] * 2
    notes = [[], [CHAT.note(Statement("my", "city", "lima"))], []] * 2
    settings = GenerationSettings(max_new_tokens=120, temperature=temperature, top_k=0, max_searches=2)
    for seed in range(2):
        recomputed, cached, positions = both_paths(
            model, tokenizer, queries, [tool] * 6, settings, seed, contexts=notes, protocol=CHAT
        )
        assert_same(recomputed, cached)
        assert max(e.search_calls for e in cached) >= 1
        assert positions[True] < positions[False]


def test_a_cache_that_cannot_be_carried_falls_back_to_recomputing():
    """A sliding-window model's cache keeps only the window's columns, so moving them is not exact: the
    rollout does not carry it and recomputes the prefix, with the same episodes."""
    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        sliding_window=32,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model, tool = overfit_to_search_twice(MistralForCausalLM(config), tokenizer)
    settings = GenerationSettings(max_new_tokens=120, temperature=0.0, max_searches=2)
    recomputed, cached, positions = both_paths(
        model, tokenizer, [Query("ask my dog ?", True)] * 2, [tool] * 2, settings, 0, protocol=CHAT
    )
    assert_same(recomputed, cached)
    assert max(e.search_calls for e in cached) >= 1  # a resumed round ran, recomputing
    assert positions[True] == positions[False]
