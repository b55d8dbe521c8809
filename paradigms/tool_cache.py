"""Carrying the keys and values of one tool-loop round into the next, so a resumed round does not
recompute the prefix.

The rollout (``paradigms.agent``) generates in rounds: a round stops when a completion closes a tool
call, the tool's reply is appended, and the next round continues every unfinished episode. Without
this module each next round is a fresh ``generate`` over prompt + completion so far + reply, i.e. a
second full pass over the prompt. With it, the next round's ``generate`` receives a cache holding the
keys and values the previous rounds already computed, and feeds the model only the tokens that are
not in it (the reply, the round's last sampled token, and a few re-fed tokens, see below).

**Layout: exactly the recomputing round's.** The next round's ``input_ids`` and ``attention_mask``
are the ones a recomputing round would use (every sequence right-aligned in the batch width, left
padding masked), so positions, masks, stopping criteria and logits processors see the same tensors.
Only the cache is new: row ``a``'s cached keys and values are moved so that its tokens sit in the
columns they occupy in that layout. The cache covers the first ``width - fresh`` columns, where
``fresh`` is the largest number of uncached tokens of any row; a row with fewer uncached tokens gets
its last few cached tokens fed again (their keys and values recomputed at the same positions), so
every row's valid tokens are contiguous and no masked gap opens inside a sequence.

**Where it applies.** Only to a plain ``DynamicCache`` whose layers are all full-attention
``DynamicLayer``s (the default cache of Llama-like decoders, the builtin base and SmolLM2 among
them): moving columns is exact there because rotary positions come from the attention mask, not the
column. Any other cache (sliding-window, linear-attention, static, quantized, or none when the model
does not cache) is not carried, and the next round recomputes the prefix as before.

**Numerics.** The carried keys and values are the ones computed when their tokens were first fed
(in a prefill or a one-token decoding step); a recomputing round computes them again in one prefill.
Both are the same function of the same inputs, but CPU matrix products of a different shape may round
differently, so logits can differ in their last bits: on the real builtin base by at most ~6e-6, which
changed no token of 1,600 greedy and 1,600 sampled episodes (``benchmarks/tool_loop.py``,
docs/performance.md). A token can change only where a sampled draw or the argmax falls that close to
a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.generation.utils import GenerateDecoderOnlyOutput

#: ``generate``'s keyword and output field for the cache (``cache`` since transformers 5.x renamed
#: ``past_key_values``; both spellings are handled so any 5.x release works).
CACHE_FIELD = "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"


@dataclass
class CarriedCache:
    """The cache a round ended with, and where each episode's tokens are in it.

    ``rows[k]`` is episode ``k``'s batch row; its first ``cached[k]`` tokens (prompt + completion, a
    prefix of its next sequence) sit in columns ``starts[k] .. starts[k] + cached[k] - 1``.
    """

    cache: DynamicCache
    rows: dict[int, int]
    starts: dict[int, int]
    cached: dict[int, int]


def output_cache(output) -> DynamicCache | None:
    """The cache of a ``generate`` output (``return_dict_in_generate=True``) when it can be carried."""
    cache = getattr(output, CACHE_FIELD, None)
    if type(cache) is not DynamicCache:
        return None
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer or not layer.is_initialized for layer in layers):
        return None
    return cache


def carry(
    cache: DynamicCache | None, keys: Sequence[int], width: int, lengths: Sequence[int], kept: Sequence[int]
) -> CarriedCache | None:
    """What a finished round leaves for the next: ``keys[i]`` is row i's episode, ``lengths[i]`` the
    length of its sequence in the round's input (right-aligned in ``width`` columns), ``kept[i]`` the
    tokens the round added to it (its new completion tokens, before any tool reply)."""
    if cache is None:
        return None
    columns = cache.get_seq_length()
    starts = {k: width - n for k, n in zip(keys, lengths, strict=True)}
    return CarriedCache(
        cache,
        rows={k: row for row, k in enumerate(keys)},
        starts=starts,
        cached={
            k: min(n + extra, columns - starts[k]) for k, n, extra in zip(keys, lengths, kept, strict=True)
        },
    )


def resume(
    carried: CarriedCache, keys: Sequence[int], lengths: Sequence[int], width: int
) -> DynamicCache | None:
    """The cache for a round over episodes ``keys`` whose sequences (``lengths[i]`` tokens each, every
    one extending what ``carried`` holds for it) are right-aligned in ``width`` columns; None when no
    column can be carried (then the round recomputes everything)."""
    lengths_t = torch.tensor(list(lengths))
    fresh = max(n - carried.cached[k] for k, n in zip(keys, lengths, strict=True))
    columns = width - fresh  # carried columns; the last ``fresh`` are fed to the model
    if columns <= 0:
        return None
    rows = torch.tensor([carried.rows[k] for k in keys])
    # new column c of row a holds token c - (width - n_a) of its sequence, which sat in old column
    # starts[a] + that index: a constant shift per row
    shift = torch.tensor([carried.starts[k] - (width - n) for k, n in zip(keys, lengths, strict=True)])
    position = torch.arange(columns)
    valid = position[None, :] >= (width - lengths_t)[:, None]  # (A, C): left padding is not
    source = torch.where(valid, position[None, :] + shift[:, None], 0)  # (A, C)
    data = []
    for layer in carried.cache.layers:
        moved = []
        for states in (layer.keys, layer.values):  # (B, H, L, D)
            states = states[rows.to(states.device)]
            index = source.to(states.device)[:, None, :, None].expand(
                -1, states.shape[1], -1, states.shape[3]
            )
            gathered = torch.gather(states, 2, index)  # (A, H, C, D)
            moved.append(torch.where(valid.to(states.device)[:, None, :, None], gathered, 0.0))
        data.append(tuple(moved))
    return DynamicCache(ddp_cache_data=data)
