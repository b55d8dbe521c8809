"""Greedy answers that cannot have changed, generated once: the session's answer cache.

A greedy rollout (temperature 0) draws no random number: its episodes are a function of the model
(its code, configuration and weights), the tokenizer, the prompts (queries and the notes placed in
them), the tool decisions, the search tool's knowledge base, the generation settings and the protocol.
``AnswerCache`` keeps the episodes of such a call under a key made of exactly these and hands back a
copy when the identical call comes again, so a run's evaluations stop regenerating what they already
know: a ``frozen`` run's evaluations after the first, the general probe a ``full_ft`` run's first
evaluation shares with the untouched base's (``Evaluator.measure_base``), a notes paradigm's general
probe without notes.

The weights enter the key as a digest of every parameter and buffer's bytes (with names, dtypes and
shapes), never as a counter an update might forget to bump: a changed weight always misses. The digest
costs one pass over the weights, so it is taken once per :meth:`AnswerCache.fixed_weights` block, inside
which the caller promises the weights do not change (the runner wraps each evaluation in one); outside a
block nothing is cached. Sampled calls (temperature above 0) are never cached: serving one would skip its
random draws and change everything drawn after it.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager

import torch

from paradigms.agent import Episode, GenerationSettings
from tasks.items import Query
from tasks.search import SearchTool

#: Calls kept (least recently used dropped first); a run's evaluation makes a handful per evaluation.
MAX_ENTRIES = 64


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of what the model computes with: its class, configuration, generation defaults and the
    exact bytes of every named parameter and buffer (with its name, dtype and shape)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(type(model).__qualname__.encode())
    for attribute in ("config", "generation_config"):
        part = getattr(model, attribute, None)
        if part is not None and hasattr(part, "to_json_string"):
            digest.update(part.to_json_string().encode())
    named = [("parameter", *p) for p in model.named_parameters(remove_duplicate=False)]
    named += [("buffer", *b) for b in model.named_buffers(remove_duplicate=False)]
    for kind, name, tensor in named:
        data = tensor.detach()
        digest.update(f"{kind}:{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tool_key(tool: SearchTool | None) -> Hashable:
    """What the search tool answers from: its knowledge base, result count and protocol (None: no tool)."""
    if tool is None:
        return None
    return (tool.lines, tool.max_results, tool.protocol.name)


class AnswerCache:
    """Episodes of greedy rollouts, keyed by everything they depend on; ``hits``/``misses`` count calls."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, list[Episode]] = OrderedDict()
        self._digests: dict[int, tuple[torch.nn.Module, str]] | None = None
        self._tokenizers: dict[int, object] = {}  # kept alive so an id in a key is never reused

    @contextmanager
    def fixed_weights(self) -> Iterator[None]:
        """Inside the block, greedy calls are served from and stored in the cache.

        The caller promises that no model used inside changes its weights before the block ends (each
        model's digest is taken once, at its first call). Blocks do not nest.
        """
        if self._digests is not None:
            raise RuntimeError("AnswerCache.fixed_weights blocks do not nest")
        self._digests = {}
        try:
            yield
        finally:
            self._digests = None

    @property
    def active(self) -> bool:
        return self._digests is not None

    def _digest(self, model: torch.nn.Module) -> str:
        known = self._digests.get(id(model))
        if known is None:
            known = (model, weights_digest(model))
            self._digests[id(model)] = known
        return known[1]

    def key(
        self,
        model,
        tokenizer,
        queries: Sequence[Query],
        contexts: Sequence[Sequence[str]] | None,
        decisions: Sequence[str | None] | None,
        tool: SearchTool | None,
        settings: GenerationSettings,
        protocol_name: str,
    ) -> Hashable | None:
        """The call's key, or None when it must not be cached (sampled, or outside ``fixed_weights``)."""
        if not self.active or settings.temperature > 0:
            return None
        self._tokenizers[id(tokenizer)] = tokenizer
        n = len(queries)
        return (
            self._digest(model),
            id(tokenizer),
            protocol_name,
            settings,
            tool_key(tool),
            tuple(queries),
            tuple(tuple(c) for c in contexts) if contexts else ((),) * n,
            tuple(decisions) if decisions else (None,) * n,
        )

    def get(self, key: Hashable | None) -> list[Episode] | None:
        """A copy of the episodes stored under ``key`` (None: not cached, counted as a miss)."""
        if key is None:
            return None
        episodes = self._entries.get(key)
        if episodes is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return copy.deepcopy(episodes)

    def put(self, key: Hashable | None, episodes: Sequence[Episode]) -> None:
        """Store a copy of a call's episodes (nothing when ``key`` is None)."""
        if key is None:
            return
        self._entries[key] = copy.deepcopy(list(episodes))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
