"""Greedy rounds read the prompt prefix every row shares once.

A chat model's prompts begin with the same tokens: SmolLM2's chat template writes the system message
with the tool instructions, 54 of an evaluation prompt's ~67 tokens, before each question. A
left-padded ``generate`` prefills that prefix again for every row. Here the model reads it once, for
one row, and the round starts from a cache that holds it for every row, moved into each row's own
columns by :func:`paradigms.tool_cache.resume` exactly as a resumed tool-loop round's cache is. The
round's ``input_ids``, attention mask and positions are the ones a full prefill uses; the prefill only
feeds the columns after the prefix (a row whose question is shorter than the longest gets its last
few prefix tokens fed again, see ``paradigms.tool_cache``).

**Numerics.** The prefix's keys and values come from a one-row pass instead of the batch's, and a CPU
matrix product of another shape may round differently: on SmolLM2 the first step's logits moved by at
most ~5e-5 (``benchmarks/eval_decoding.py --way shared_prefix``). A greedy token changes only where
the argmax lies within that of a tie; no answer changed in the measured evaluations (docs/performance.md).
Sampled rounds keep the full prefill, because a draw can fall that close to a boundary at any step and
training's trajectory would then depart from the one the committed comparisons were run with.

**Where it applies.** Greedy rounds without a carried cache (the first round of a rollout, or every
round with ``reuse_cache=False``), with at least two rows, whose shared prefix is at least
:data:`MIN_FRACTION` of the batch's width, on a model whose cache ``paradigms.tool_cache`` can carry.
The builtin base's evaluation calls (9-49 columns) share less than that, which would not pay for the
extra pass anyway (its forward pass costs about the same for 1 or 200 rows): its runs prefill as before
(the same positions either way, ``benchmarks/results/shared_prefix.json``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paradigms import tool_cache

#: Read the shared prefix once only when it is at least this fraction of the batch's width, here and in
#: ``experiments.evaluation.kl_to_reference``'s passes (a SmolLM2 evaluation's parts share 54 of 68-82
#: columns, its general probe 27 of 52, its KL batches 54 of 100; the builtin base's first evaluation
#: call 2 of 9, its KL batches 4 of 24, where the extra one-row pass would gain nothing: 1.00-1.02x,
#: ``benchmarks/kl_prefix.py``).
MIN_FRACTION = 0.25


def length(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every sequence shares, leaving each at least one token after them (the
    prefill needs one to feed)."""
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    for position in range(limit):
        token = first[position]
        if any(s[position] != token for s in sequences):
            return position
    return max(limit, 0)


def worth_reading_once(sequences: Sequence[Sequence[int]], limit: int | None = None) -> int:
    """The length of the prefix ``sequences`` share (:func:`length`, at most ``limit`` tokens) where
    reading it once pays for the extra one-row pass, else 0: fewer than two sequences, or a prefix
    shorter than :data:`MIN_FRACTION` of the longest sequence."""
    if len(sequences) < 2:
        return 0
    shared = length(sequences) if limit is None else min(length(sequences), limit)
    return shared if shared > 0 and shared >= MIN_FRACTION * max(len(s) for s in sequences) else 0


@torch.no_grad()
def carried(
    model, sequences: Sequence[Sequence[int]], keys: Sequence[int], device
) -> tool_cache.CarriedCache | None:
    """The prefix ``sequences`` share, read once by ``model`` and held for every row as a carried cache
    (episode ``keys[i]`` is ``sequences[i]``); None where it does not apply (see the module's text)."""
    shared = worth_reading_once(sequences)
    if not shared:
        return None
    ids = torch.tensor([list(sequences[0][:shared])], device=device)
    output = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    cache = tool_cache.output_cache(output)
    if cache is None:
        return None
    return tool_cache.CarriedCache(
        cache,
        rows=dict.fromkeys(keys, 0),
        starts=dict.fromkeys(keys, 0),
        cached=dict.fromkeys(keys, shared),
    )
