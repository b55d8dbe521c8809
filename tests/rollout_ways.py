"""What the rollout tests of its savings share: a rollout run both ways from one seed with one keyword
off and on, counters of what the model computed, the episode comparison, and a tiny model overfit to
call the chat tool twice (``test_tool_cache``, ``test_open_rows``, ``test_shared_prefix``)."""

from __future__ import annotations

import torch

from paradigms.agent import rollout
from tasks.items import Query
from tasks.protocols import PROTOCOLS, Statement
from tasks.search import SearchTool

CHAT = PROTOCOLS["chat"]
QUERIES = [Query("ask my dog ?", True), Query("ask kalo color ?", True), Query("ask my city ?", True)]
NOTES = [[], ["note my city oslo ."], ["note my city oslo .", "note kalo color red ."]]


def fed_positions(model) -> tuple[list[int], object]:
    """A running count of the token positions the model's forward passes compute, and its hook."""
    fed = [0]

    def count(module, inputs, output):
        fed[0] += inputs[0].numel()

    return fed, model.get_input_embeddings().register_forward_hook(count)


def decoding_row_steps(model) -> tuple[list[int], object]:
    """A running count of the rows the model's one-position forward passes compute, and its hook."""
    rows = [0]

    def count(module, inputs, output):
        if inputs[0].shape[1] == 1:
            rows[0] += inputs[0].shape[0]

    return rows, model.get_input_embeddings().register_forward_hook(count)


def both_ways(keyword, counter, model, tokenizer, queries, tools, settings, seed, **kwargs):
    """The episodes of ``rollout(..., keyword=False)`` and ``keyword=True`` from the same seed, and what
    ``counter`` (:func:`fed_positions`, :func:`decoding_row_steps`) counted each way, keyed by the value."""
    counted, hook = counter(model)
    runs, counts = {}, {}
    try:
        for on in (False, True):
            counted[0] = 0
            torch.manual_seed(seed)
            runs[on] = rollout(model, tokenizer, queries, tools, settings, **{keyword: on}, **kwargs)
            counts[on] = counted[0]
    finally:
        hook.remove()
    return runs[False], runs[True], counts


def assert_same(reference, other):
    """The same token ids, env masks, transcripts, tool calls and results, episode by episode."""
    for before, after in zip(reference, other, strict=True):
        assert after.completion_ids == before.completion_ids
        assert after.env_mask == before.env_mask
        assert after.completion == before.completion
        assert after.search_queries == before.search_queries
        assert after.tool_results == before.tool_results
        assert after.finished == before.finished


def overfit_to_search_twice(model, tokenizer):
    """``model`` trained to call the chat tool twice, then answer from its reply; and the tool."""
    tool = SearchTool.over([Statement("my", "dog", "rex")], CHAT, 1)
    call = '<tool_call>{"name": "search", "arguments": {"query": "my dog"}}</tool_call>'
    turn = CHAT.tool_reply(tool("my dog"), tokenizer)
    text = CHAT.render_prompt(Query("ask my dog ?", True), [], tokenizer) + call + turn + call + turn
    ids = tokenizer(text + "Rex.<|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(200):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), tool
