"""Greedy decoding that computes only the rows of a batch that have not ended.

``generate`` runs every row of a batch until the last one ends: a row that has ended is fed padding
at every later step and goes through every forward pass, its next token thrown away. On an evaluation
of SmolLM2 that is half of the decoding row-steps (``benchmarks/eval_decoding.py``). Inside
:func:`computing_open_rows`, a decoding step (a forward pass over one position) whose batch holds rows
fed the padding token runs the model on the other rows only (topped up with ended rows to at least
:data:`MIN_ROWS`), over their part of the cache, and gives ``generate`` what it reads: the logits (zeros
for the skipped rows, whose next token ``generate`` replaces by padding anyway) and, when the call
ends, the whole cache (zeros in the skipped rows' columns). Everything else is ``generate``'s own: its
inputs, logits processors, stopping criteria and output.

**Which rows are skipped.** A decoding step feeds each row the token it sampled last. A row is fed the
padding token only once ``generate`` has ended it: padding is never sampled (``paradigms.agent`` suppresses
it unless it doubles as the end-of-sequence token, and a row that samples that has ended). So the
step after a row's last token still computes that token's keys and values, which the tool loop carries
into the next round (``paradigms.tool_cache``) for a row that ended on a tool call; only the padding
after it is skipped, whose cache columns no later computation reads: attention is per row, a skipped
row is skipped at every later step, and the tool loop carries a row's own tokens only.

**Same tokens: a measured fact.** The open rows' logits are the same bits as in the whole batch only
if the model computes a row the same way in a batch of fewer rows. On CPU torch's matrix products and
attention do here for four rows or more (three or fewer take other kernels, hence :data:`MIN_ROWS`): a
prefill of half a batch's rows and a decoding step from their part of the cache give the whole batch's
logits to the bit, on the builtin base and on SmolLM2 (``benchmarks/eval_decoding.py``,
``rows_independent``), and ``tests/test_open_rows.py`` checks equal logits, episodes and caches. Other
kernels (a GPU's, another BLAS) need not. ``generate`` must also see the model's own forward signature
(it passes ``logits_to_keep`` at the prefill only to a forward that takes it, and the LM head's product
over one position rounds otherwise than over all): the wrapper keeps it. Sampling is left alone: ``generate``
draws its random numbers for every row, and a row's zeroed logits would change which draws the
others get only if a kernel's draws depended on the values, which is not worth resting a sampled
episode on; greedy decoding draws none.

**Where it applies.** A plain ``DynamicCache`` of full-attention ``DynamicLayer``s (Llama-like decoders,
the builtin base and SmolLM2 among them), inputs among ``input_ids``, ``attention_mask``,
``position_ids``, ``inputs_embeds`` and ``token_type_ids``, and logits in the output. Any other step
runs whole, as without it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

#: Forward inputs with a batch dimension first that a step of only some rows slices.
BATCH_INPUTS = ("input_ids", "attention_mask", "position_ids", "inputs_embeds", "token_type_ids")
#: The fewest rows a step computes: ended rows top the open ones up to it. CPU matrix products of
#: three rows or fewer take other kernels here, whose logits differ from the whole batch's in the last
#: bits (``tests/test_open_rows.py``); four and more rows give the same bits, and eight leave a margin.
MIN_ROWS = 8
#: The cache's keyword in a forward call (``past_key_values`` before transformers 5.x renamed it).
CACHE_INPUTS = ("cache", "past_key_values")


def innermost(model):
    """The module whose forward ``generate`` calls: a PEFT wrapper's base model, else ``model``."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def computing_open_rows(model, pad_token_id: int | None) -> Iterator[None]:
    """For the block (one ``generate`` call), ``model``'s decoding steps compute only the rows not fed
    ``pad_token_id`` (see the module docstring); the cache ``generate`` returns is whole when the block
    ends. Nothing changes when ``pad_token_id`` is None."""
    if pad_token_id is None:
        yield
        return
    module = innermost(model)
    own = module.__dict__.get("forward")  # an instance's own forward (a hook library's), kept
    steps = _OpenRowSteps(module.forward, pad_token_id)
    # generate reads the forward's signature (whether to pass ``logits_to_keep`` at the prefill, which
    # changes the LM head's matrix product): the wrapper keeps the model's
    module.forward = functools.wraps(module.forward)(lambda *args, **kwargs: steps(*args, **kwargs))
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own
        steps.settle()


class _OpenRowSteps:
    """The forward calls of one ``generate`` call.

    Once a decoding step has rows fed padding, the open rows' keys and values live in ``part`` (a cache
    of those rows only, which the model extends at each step) and ``whole`` (``generate``'s cache) is
    brought up to date only when the open rows change and at the end (:meth:`settle`): the columns
    ``part`` holds beyond the first ``settled`` are appended to ``whole``, zeros for the other rows.
    Rows only ever end, so the open rows of a later step are some of ``rows``.
    """

    def __init__(self, forward, pad_token_id: int):
        self.forward, self.pad_token_id = forward, pad_token_id
        self.whole: DynamicCache | None = None
        self.part: DynamicCache | None = None
        self.rows: torch.Tensor | None = None  # the rows of ``whole`` that ``part`` holds, in order
        self.settled = 0  # columns of ``whole`` (and of ``part``) that ``whole`` already holds

    def __call__(self, *args, **kwargs):
        input_ids = kwargs.get("input_ids")
        cache_key = next((key for key in CACHE_INPUTS if kwargs.get(key) is not None), None)
        decoding = (
            not args
            and input_ids is not None
            and input_ids.ndim == 2
            and input_ids.shape[1] == 1
            and cache_key is not None
            and _plain_cache(kwargs[cache_key])
            and (self.whole is None or kwargs[cache_key] is self.whole)
        )
        batch = input_ids.shape[0] if decoding else 0
        sliced = self._sliced(kwargs, cache_key, batch) if decoding else None
        open_rows = (input_ids[:, 0] != self.pad_token_id).nonzero().flatten() if decoding else None
        computed = self._computed_rows(open_rows, batch) if sliced is not None else None
        if computed is None or not self._narrow_to(computed, kwargs[cache_key]):
            self.settle()
            return self.forward(*args, **kwargs)
        output = self.forward(
            **{key: value[self.rows] for key, value in sliced.items()},
            **{key: value for key, value in kwargs.items() if key not in sliced and key != cache_key},
            **{cache_key: self.part},
        )
        logits = getattr(output, "logits", None)
        if logits is None:
            raise RuntimeError("computing_open_rows: the model's output has no logits")
        whole_logits = logits.new_zeros((batch, *logits.shape[1:]))
        whole_logits[self.rows] = logits
        output["logits"] = whole_logits
        # the output's own keys: ``key in output`` and ``output[key]`` with the name transformers 5.x
        # renamed go through its back-compatibility path, which warns on every run
        for key in [key for key in output if key in CACHE_INPUTS]:
            output[key] = self.whole  # generate carries it to the next step, which reads ``part``
        return output

    def _sliced(self, kwargs: dict, cache_key: str, batch: int) -> dict | None:
        """The inputs to take the open rows of; None when an input of the batch is not one of them."""
        sliced = {}
        for key, value in kwargs.items():
            if key == cache_key or not isinstance(value, torch.Tensor) or not value.ndim:
                continue
            if value.shape[0] == batch:
                if key not in BATCH_INPUTS:
                    return None
                sliced[key] = value
        return sliced

    def _computed_rows(self, open_rows: torch.Tensor, batch: int) -> torch.Tensor | None:
        """The rows this step computes: the open ones, topped up to :data:`MIN_ROWS` with ended rows
        ``part`` already holds (or the first ended ones); None when that is the whole batch."""
        if len(open_rows) == batch or batch <= MIN_ROWS:
            return None
        if len(open_rows) >= MIN_ROWS:
            return open_rows
        candidates = self.rows if self.rows is not None else torch.arange(batch, device=open_rows.device)
        ended = candidates[~torch.isin(candidates, open_rows)]
        return torch.sort(torch.cat([open_rows, ended[: MIN_ROWS - len(open_rows)]])).values

    def _narrow_to(self, open_rows: torch.Tensor, whole: DynamicCache) -> bool:
        """Make ``part`` hold exactly ``open_rows``; False when it cannot (a row open again)."""
        if self.part is None:
            self.whole, self.rows, self.settled = whole, open_rows, whole.get_seq_length()
            self.part = _rows_of(whole, open_rows)
            return True
        if torch.equal(open_rows, self.rows):
            return True
        within = torch.searchsorted(self.rows, open_rows)
        if within.max() >= len(self.rows) or not torch.equal(self.rows[within], open_rows):
            return False
        self._write_back()
        self.rows, self.part = open_rows, _rows_of(self.part, within)
        return True

    def _write_back(self) -> None:
        """Append to ``whole`` the columns ``part`` computed since the last write-back."""
        for layer, computed in zip(self.whole.layers, self.part.layers, strict=True):
            layer.keys = _more_columns(layer.keys, computed.keys[:, :, self.settled :], self.rows)
            layer.values = _more_columns(layer.values, computed.values[:, :, self.settled :], self.rows)
        self.settled = self.part.get_seq_length()

    def settle(self) -> None:
        """``whole`` holds every column computed; steps from here on start from it."""
        if self.part is not None:
            self._write_back()
        self.whole = self.part = self.rows = None
        self.settled = 0


def _plain_cache(cache) -> bool:
    layers = getattr(cache, "layers", None)
    return (
        type(cache) is DynamicCache
        and bool(layers)
        and all(type(layer) is DynamicLayer and layer.is_initialized for layer in layers)
    )


def _rows_of(cache: DynamicCache, rows: torch.Tensor) -> DynamicCache:
    """A new cache of ``rows`` of ``cache`` (copies)."""
    return DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers])


def _more_columns(whole: torch.Tensor, columns: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``whole`` (B, H, L, D) with ``columns`` (b, H, n, D) of ``rows`` appended, zeros for the others."""
    block = whole.new_zeros((whole.shape[0], whole.shape[1], columns.shape[2], whole.shape[3]))
    block[rows] = columns
    return torch.cat([whole, block], dim=-2)
