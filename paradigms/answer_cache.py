"""Greedy answers that cannot have changed, generated once: the session's answer cache.

A greedy rollout (temperature 0) draws no random number: its episodes are a function of the model
(its code, configuration and weights), the tokenizer, the prompts (queries and the notes placed in
them), the tool decisions, the search tool's knowledge base, the generation settings and the protocol.
``AnswerCache`` keeps the episodes of such a request under a key made of exactly these and hands back a
copy when the identical request comes again, so a run's evaluations stop regenerating what they already
know: a ``frozen`` run's evaluations after the first (until a drift phase changes the items or the tool),
and, where an evaluation answers part by part (a backbone above
``experiments.evaluation.PARTS_TOGETHER_MAX_PARAMETERS``), the general probe a ``full_ft`` run's first
evaluation shares with the untouched base's (``Evaluator.measure_base``) and a notes paradigm's general
probe without notes. The stored requests are shared by every session of the process (a grid's runs):
the runs of one user (seed) that start from the untouched base without notes (``frozen``, ``memory``,
``full_ft``) answer their first evaluation once between them, and the base's general probe is answered
once per backbone, user and probe.

The weights enter the key as a digest of every parameter and buffer's bytes (with names, dtypes, shapes
and devices), never as a counter an update might forget to bump: a changed weight always misses; the
tokenizer as a digest of its vocabulary, rules and chat template; the torch thread count and deterministic
mode too (CPU kernels round differently with another thread count). The digest
costs one pass over the weights, so it is taken once per :meth:`AnswerCache.fixed_weights` block, inside
which the caller promises the weights do not change (the runner wraps each evaluation in one); outside a
block nothing is cached. Sampled calls (temperature above 0) are never cached: serving one would skip its
random draws and change everything drawn after it.

Calls answered together (``Session.interact_together``, an evaluation's parts on a small backbone) are
one batched rollout, and a row's logits carry the rounding of its batch's shape. So the key is the whole
request's: every call's :func:`call_identity` in order, and a request is served only whole. A served
answer is then always the one its own batch computes, whatever the process answered before (another
run of a grid, or no cache at all), and what a run logs never depends on what the store held.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, zip_longest

import torch

from paradigms.agent import Episode, GenerationSettings
from tasks.items import Query
from tasks.search import SearchTool

#: Requests kept by the process (least recently used dropped first): a run makes one per evaluation on a
#: small backbone, about six on a large one, each a few hundred kB at most (72 chat episodes of ~300
#: prompt tokens: ~0.3 MB; an evaluation of the builtin base, ~220 short episodes, about as much).
MAX_ENTRIES = 128


#: Module attributes that change what a module computes without being a tensor: PEFT's adapter
#: configuration, its per-layer scaling (``lora_alpha / r``), which adapters are active, merged or off.
MODULE_STATE = ("peft_config", "scaling", "active_adapter", "merged_adapters", "disable_adapters")


def _descriptions(model: torch.nn.Module) -> Iterator[bytes]:
    """What the model computes with besides its tensors: its class, configuration, generation defaults and
    every module's class and adapter state (:data:`MODULE_STATE`)."""
    yield from model_descriptions(model)
    for name, module in model.named_modules(remove_duplicate=False):
        state = {a: getattr(module, a, None) for a in MODULE_STATE}
        yield f"{name}:{type(module).__qualname__}:{sorted(state.items(), key=str)!r}".encode()


def model_descriptions(model: torch.nn.Module) -> Iterator[bytes]:
    """The model's class, configuration and generation defaults (the first of :func:`_descriptions`)."""
    yield type(model).__qualname__.encode()
    for attribute in ("config", "generation_config"):
        part = getattr(model, attribute, None)
        if part is not None and hasattr(part, "to_json_string"):
            yield part.to_json_string().encode()


#: A model's tensors as (kind, name, tensor): kind "parameter" or "buffer".
NamedTensors = list[tuple[str, str, torch.Tensor]]


def named_tensors(model: torch.nn.Module) -> NamedTensors:
    """Every parameter, then every buffer, as (kind, name, tensor), duplicates (tied weights) included."""
    named = [("parameter", *p) for p in model.named_parameters(remove_duplicate=False)]
    return named + [("buffer", *b) for b in model.named_buffers(remove_duplicate=False)]


def _tensors(model: torch.nn.Module) -> Iterator[bytes | torch.Tensor]:
    """Every named parameter and buffer: its description (kind, name, dtype, device, shape), then itself."""
    return _described(named_tensors(model))


def _described(named: NamedTensors) -> Iterator[bytes | torch.Tensor]:
    """Each (kind, name, tensor): its description (kind, name, dtype, device, shape), then the tensor."""
    for kind, name, tensor in named:
        data = tensor.detach()
        yield f"{kind}:{name}:{data.dtype}:{data.device}:{tuple(data.shape)}".encode()
        yield data


def _tensor_bytes(data: torch.Tensor) -> torch.Tensor:
    """The tensor's exact bytes as a flat uint8 tensor (a view when it is already contiguous on the CPU)."""
    return data.cpu().contiguous().view(-1).view(torch.uint8)


def computation_digest(model: torch.nn.Module) -> str:
    """A digest of what the model computes with (:func:`_descriptions`: its class, configuration,
    generation defaults, every module's class and adapter state; :func:`_tensors`: the exact bytes of
    every named parameter and buffer with its name, dtype, device and shape). Wider than
    ``paradigms.backbone.weights_digest`` (the weights' bytes alone, for "weights unchanged" checks): two
    models with equal weights but another LoRA scaling or active adapter answer differently and must not
    share answers."""
    digest = hashlib.blake2b(digest_size=20)
    for part in chain(_descriptions(model), _tensors(model)):
        digest.update(part if isinstance(part, bytes) else _tensor_bytes(part).numpy())  # (not a copy)
    return digest.hexdigest()


def same_computation(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    """Whether two models compute the same function now, byte for byte: what :func:`computation_digest`
    digests, compared directly, and every module's training flag (a dropout layer in training mode
    draws). Cheapest and likeliest differences first, stopping at the first: the flags, then the tensors
    (a trained copy differs in its first trained tensor, a PEFT wrapper in its first tensor's name), then
    the descriptions. A "yes" reads every tensor of both once, without hashing them."""
    if first is second:
        return True
    if [m.training for m in first.modules()] != [m.training for m in second.modules()]:
        return False
    if not same_tensors(named_tensors(first), named_tensors(second)):
        return False
    return all(a == b for a, b in zip_longest(_descriptions(first), _descriptions(second)))


def same_tensors(first: NamedTensors, second: NamedTensors) -> bool:
    """Whether two sequences of (kind, name, tensor) are equal: the same kinds, names, dtypes, devices and
    shapes in the same order, and the same bytes; stops at the first difference."""
    for a, b in zip_longest(_described(first), _described(second)):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            if not torch.equal(_tensor_bytes(a), _tensor_bytes(b)):
                return False
        elif isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) or a != b:
            return False  # another description, or a tensor only one of them has (None)
    return True


def tokenizer_digest(tokenizer) -> str:
    """A digest of how the tokenizer maps text to ids and back: its class, its whole definition (a fast
    tokenizer's JSON, else its vocabulary), special tokens, padding side and chat template."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(type(tokenizer).__qualname__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    for attribute in ("special_tokens_map", "padding_side", "chat_template", "pad_token_id", "eos_token_id"):
        digest.update(f"{attribute}={getattr(tokenizer, attribute, None)!r}".encode())
    return digest.hexdigest()


def call_identity(
    queries: Sequence[Query],
    contexts: Sequence[Sequence[str]] | None,
    decisions: Sequence[str | None] | None,
    tool: SearchTool | None,
) -> Hashable:
    """What one call's rows are generated from besides the model, tokenizer, settings and protocol: the
    queries, the notes in each prompt, the tool decisions and the search tool. Two calls with equal
    identities in one request get the same episodes."""
    n = len(queries)
    return (
        tool_key(tool),
        tuple(queries),
        tuple(tuple(c) for c in contexts) if contexts else ((),) * n,
        tuple(decisions) if decisions else (None,) * n,
    )


def tool_key(tool: SearchTool | None) -> Hashable:
    """What the search tool answers from: its knowledge base, result count and protocol (None: no tool)."""
    if tool is None:
        return None
    return (tool.lines, tool.max_results, tool.protocol.name)


#: The requests every session of the process shares (``AnswerCache(entries=...)`` for a private store).
SHARED: OrderedDict[Hashable, list[Episode]] = OrderedDict()


class AnswerCache:
    """Episodes of greedy rollouts, keyed by everything they depend on; ``hits``/``misses`` count this
    cache's requests. ``entries`` is where requests are stored: the process's :data:`SHARED` by default."""

    def __init__(
        self, entries: OrderedDict[Hashable, list[Episode]] | None = None, max_entries: int = MAX_ENTRIES
    ):
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        #: Every request this cache stored, in order (``stored_since``: what a forked copy hands back).
        self.stored: list[Hashable] = []
        self._entries = SHARED if entries is None else entries
        self._digests: dict[int, tuple[object, str]] | None = None

    @contextmanager
    def fixed_weights(self) -> Iterator[None]:
        """Inside the block, greedy requests are served from and stored in the cache.

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

    def _digest(self, part, digest) -> str:
        """``digest(part)``, taken once per block (the part is kept alive so its id is not reused)."""
        known = self._digests.get(id(part))
        if known is None:
            known = (part, digest(part))
            self._digests[id(part)] = known
        return known[1]

    def key(
        self, model, tokenizer, settings: GenerationSettings, protocol_name: str, calls: Sequence[Hashable]
    ):
        """The key of a request (``calls``: each call's :func:`call_identity`, in order), or None when it must
        not be cached (sampled, or outside ``fixed_weights``)."""
        if not self.active or settings.temperature > 0:
            return None
        return (
            self._digest(model, computation_digest),
            self._digest(tokenizer, tokenizer_digest),
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            protocol_name,
            settings,
            tuple(calls),
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
        """Store a copy of a request's episodes, its distinct calls' rows in order (nothing when ``key`` is
        None)."""
        if key is None:
            return
        self._keep(key, copy.deepcopy(list(episodes)))
        self.stored.append(key)

    def stored_since(self, count: int) -> list[tuple[Hashable, list[Episode]]]:
        """The requests stored after the first ``count`` of :attr:`stored`, with their episodes (those the
        store has dropped since left out): what an evaluation in a forked copy of the run stored, and hands
        back for the run to store too (:meth:`adopt`)."""
        return [(key, self._entries[key]) for key in self.stored[count:] if key in self._entries]

    def adopt(self, entries: Sequence[tuple[Hashable, list[Episode]]]) -> None:
        """Store requests answered elsewhere (:meth:`stored_since` in a forked copy; the episodes are this
        cache's from now on)."""
        for key, episodes in entries:
            self._keep(key, list(episodes))

    def _keep(self, key: Hashable, episodes: list[Episode]) -> None:
        self._entries[key] = episodes
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
