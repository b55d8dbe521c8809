"""Greedy decoding that computes only the open rows gives ``generate``'s episodes and cache.

``paradigms.open_rows`` skips, at each decoding step, the rows fed padding (rows ``generate`` has
ended). Each case runs the rollout both ways from the same seed and requires the same token ids, env
masks, transcripts, tool calls and results, and that the open-rows way really computed fewer row-steps
(so a silent fallback to whole steps cannot pass): on the builtin tiny base with forced and free search
calls, on a tiny Llama overfit to search twice (three rounds, whose resumed rounds read the cache the
skipping wrote), through a LoRA wrapper, and on the tiny chat model. A direct check compares
``generate``'s output and returned cache, column by column up to each row's end. Sampling is left to
``generate``: the same row-steps either way.
"""

from functools import partial

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from paradigms.agent import SEARCH, GenerationSettings
from paradigms.open_rows import computing_open_rows
from tasks.items import Query
from tasks.protocols import PROTOCOLS, Statement
from tasks.search import SearchTool
from tests import rollout_ways
from tests.rollout_ways import NOTES, QUERIES, assert_same, decoding_row_steps

both_ways = partial(rollout_ways.both_ways, "drop_ended_rows", decoding_row_steps)


GREEDY = dict(temperature=0.0, top_k=0, max_searches=2)


def forced_and_free_searches(model, tokenizer):
    """``both_ways`` over 12 queries with notes, some offered the tool, some forced to search."""
    tool = SearchTool(("my dog rex .", "my city oslo ."))
    settings = GenerationSettings(max_new_tokens=32, **GREEDY)
    return both_ways(
        model,
        tokenizer,
        QUERIES * 4,
        [tool, tool, None] * 4,
        settings,
        0,
        contexts=NOTES * 4,
        decisions=[SEARCH, None, SEARCH, None] * 3,
    )


def test_builtin_tiny_base_same_episodes_fewer_row_steps(tiny):
    model, tokenizer = tiny
    every, open_only, steps = forced_and_free_searches(model, tokenizer)
    assert_same(every, open_only)
    assert sum(e.search_calls for e in open_only) >= 6  # resumed rounds ran
    assert steps[True] < steps[False]


def test_three_rounds_read_the_cache_the_open_rows_wrote(twice):
    """Rows end at different steps of a round and the others resume from its cache: a carried row's
    last token was computed at the step after it ended, so the next round reads the same columns."""
    model, tokenizer = twice
    tool = SearchTool(("my dog rex .", "my city oslo ."), max_results=1)
    settings = GenerationSettings(max_new_tokens=40, **GREEDY)
    queries = ([Query("ask my dog ?", True)] * 6 + [Query("ask my city ?", True)] * 2) * 2
    notes = [[], ["note my city oslo ."], ["note kalo color red .", "note my city oslo ."], []] * 4
    every, open_only, steps = both_ways(
        model, tokenizer, queries, ([tool] * 7 + [None]) * 2, settings, 0, contexts=notes
    )
    assert_same(every, open_only)
    assert max(e.search_calls for e in open_only) >= 2  # a third round ran
    assert len({len(e.completion_ids) for e in open_only}) > 1  # rows ended at different steps
    assert steps[True] < steps[False]


def test_a_lora_adapter_computes_only_the_open_rows_too(tiny_base):
    """The adapter paradigm generates through PEFT's wrapper: the skipping reaches the wrapped model."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    model = get_peft_model(base, config).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    every, open_only, steps = forced_and_free_searches(model, tokenizer)
    assert_same(every, open_only)
    assert steps[True] < steps[False]
    assert "forward" not in model.get_base_model().__dict__  # the class's forward again


def test_chat_tool_turns_same_episodes(chat_twice):
    model, tokenizer, tool = chat_twice
    chat = PROTOCOLS["chat"]
    queries = [Query("ask my dog ?", True), Query("ask my city ?", True), Query("ask my dog ?", False)] * 4
    notes = [[], [chat.note(Statement("my", "city", "lima"))], []] * 4
    settings = GenerationSettings(max_new_tokens=120, **GREEDY)
    every, open_only, steps = both_ways(
        model, tokenizer, queries, [tool] * 12, settings, 0, contexts=notes, protocol=chat
    )
    assert_same(every, open_only)
    assert max(e.search_calls for e in open_only) >= 2
    assert len({len(e.completion_ids) for e in open_only}) > 1
    assert steps[True] < steps[False]


def test_sampling_computes_every_row(tiny):
    """Sampled rollouts are ``generate``'s own: the same row-steps either way."""
    model, tokenizer = tiny
    settings = GenerationSettings(max_new_tokens=32, temperature=1.0, top_k=0, max_searches=2)
    every, open_only, steps = both_ways(model, tokenizer, QUERIES * 4, [None] * 12, settings, 0)
    assert_same(every, open_only)
    assert steps[True] == steps[False]


def test_no_deprecated_cache_name_is_read(tiny, monkeypatch):
    """The steps hand ``generate`` its cache under the output's own key: asking an output for the name
    transformers 5.x renamed goes through its back-compatibility path, which warned on every run."""
    import transformers.utils.generic

    warned = []
    monkeypatch.setattr(transformers.utils.generic.logger, "warning_once", warned.append)
    model, tokenizer = tiny
    steps = forced_and_free_searches(model, tokenizer)[2]
    assert steps[True] < steps[False]  # the open-rows steps ran
    assert warned == []


def _generate(model, prompts, tokenizer, end, skipping):
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, encoded))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
    mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
    options = dict(
        max_new_tokens=24,
        do_sample=False,
        pad_token_id=pad,
        eos_token_id=end,
        return_dict_in_generate=True,
        output_logits=True,
    )
    if not skipping:
        return model.generate(input_ids=ids, attention_mask=mask, **options), width
    with computing_open_rows(model, pad):
        return model.generate(input_ids=ids, attention_mask=mask, **options), width


def test_generate_returns_the_same_logits_sequences_and_cache(twice):
    """Directly on ``generate``: the same sequences, the same logits to the bit for every row still open
    at a step (down to two open rows, where the step computes ended rows as well), and the same cache
    columns for every row up to its end (the columns after it are padding's, which no later step reads)."""
    model, tokenizer = twice
    end = tokenizer(".", add_special_tokens=False)["input_ids"][-1]
    candidates = [
        "ask my dog ?",
        "note my city oslo . ask my city ?",
        "ask kalo color ?",
        "note kalo color red .",
    ]
    probe, width = _generate(model, candidates, tokenizer, end, skipping=False)
    lengths = [(row[width:] != tokenizer.pad_token_id).sum().item() for row in probe.sequences]
    early, late = candidates[lengths.index(min(lengths))], candidates[lengths.index(max(lengths))]
    assert min(lengths) < max(lengths)
    prompts = [late] * 2 + [early] * 10  # two rows stay open long after the others ended
    (every, width), (open_only, _) = (_generate(model, prompts, tokenizer, end, s) for s in (False, True))
    assert torch.equal(every.sequences, open_only.sequences)
    new = every.sequences[:, width:]
    for step, (before, after) in enumerate(zip(every.logits, open_only.logits, strict=True)):
        still_open = (
            torch.ones(len(prompts), dtype=torch.bool) if step == 0 else ~(new[:, :step] == end).any(1)
        )
        assert torch.equal(before[still_open], after[still_open]), step
    assert (~(new[:, :-1] == end).any(1)).sum() == 2  # the last steps had two rows open
    caches = [getattr(o, "cache", None) or o.past_key_values for o in (every, open_only)]
    assert caches[0].get_seq_length() == caches[1].get_seq_length()
    for row in range(len(prompts)):
        tokens = new[row].tolist()
        own = width + (tokens.index(end) + 1 if end in tokens else len(tokens))  # its end's column included
        own = min(own, caches[0].get_seq_length())
        for before, after in zip(caches[0].layers, caches[1].layers, strict=True):
            assert torch.equal(before.keys[row, :, :own], after.keys[row, :, :own])
            assert torch.equal(before.values[row, :, :own], after.values[row, :, :own])
