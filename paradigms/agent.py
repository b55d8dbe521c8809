"""The one rollout: every paradigm and the evaluator generate through ``rollout``.

Generation runs through Hugging Face ``generate`` (any causal LM), with a search-tool loop:
whenever a completion closes a tool call (the protocol's ``tool_close``: ``</search>`` in the
grammar, ``</tool_call>`` in chat), the environment appends the tool's reply (``<result> ...
</result>``; a ``tool`` message through the chat template) and generation resumes, until the
answer ends (``</answer>``, end of sequence), the token budget, or the per-query search cap. Tool
output is marked 0 in ``env_mask`` so no learner trains on it (Search-R1 style masking); the
agent's own tokens are marked 1. The protocol (``tasks.protocols``) renders the prompt and reads
the tool calls; the rollout itself is the same for every protocol.

A round that resumes after a tool reply does not recompute the prefix: it continues from the keys
and values the previous round computed (``paradigms.tool_cache``), with the same inputs, positions
and masks as a recomputing round, for any Hugging Face causal LM whose cache is a plain full-attention
``DynamicCache`` (others recompute, as ``reuse_cache=False`` always does).

Greedy decoding computes only the rows of a batch that have not ended (``paradigms.open_rows``): the
same tokens and cache as ``generate`` running every row to the end (``drop_ended_rows=False``), fewer
row-steps.

A ``sampler`` (:class:`Sampler`, e.g. ``paradigms.vllm_sampler.VLLMSampler``) can draw each round's
tokens instead of ``model.generate``: the rounds, the tool loop, the masks and the transcript stay this
module's, and each agent token keeps the log-probability the sampler gave it (``Episode.sampling_logprobs``,
0.0 at tool tokens), which an off-policy correction needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol as Interface

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from paradigms import open_rows, shared_prefix, tool_cache
from paradigms.generation import GenerationSettings
from tasks.items import Query
from tasks.protocols import PROTOCOLS, Protocol

Tool = Callable[[str], list[str]]
#: A tool decision taken outside the language model (``paradigms.tool_policy``): ``search`` makes the
#: completion open with a search call, ``answer`` forbids search calls, None leaves it to the model.
SEARCH, ANSWER = "search", "answer"


@dataclass
class Episode:
    """One response to one query.

    ``completion_ids`` holds the agent's tokens and the spliced tool output; ``env_mask[t]`` is 1
    for agent tokens (trainable) and 0 for tool tokens. ``completion`` is the transcript the
    protocol scores; ``tool_results[i]`` the lines the i-th tool call returned. ``context_tokens``
    counts the tokens of the notes a paradigm added to the prompt.
    """

    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    completion: str = ""
    search_queries: list[str] = field(default_factory=list)
    tool_results: list[list[str]] = field(default_factory=list)
    context_tokens: int = 0
    finished: bool = False
    decision: str | None = None
    sampling_logprobs: list[float] | None = None

    @property
    def search_calls(self) -> int:
        return len(self.search_queries)

    @property
    def agent_tokens(self) -> int:
        return sum(self.env_mask)

    @property
    def tool_tokens(self) -> int:
        return len(self.env_mask) - sum(self.env_mask)


class Sampler(Interface):
    """Draws a round's tokens outside the policy's ``generate`` (an inference engine kept in sync with it)."""

    def sample(
        self,
        sequences: list[list[int]],
        max_tokens: int,
        settings: GenerationSettings,
        stops: tuple[str, ...],
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Per sequence, the new tokens (at most ``max_tokens``, ending at the first stop string, end of
        sequence or the budget) and each new token's log-probability under the sampling distribution."""
        ...


class _StopOnStrings(StoppingCriteria):
    """Stops each row once its newly generated text contains a stop string.

    Works with any tokenizer (word-level or BPE): it looks at decoded text, not token ids, and only
    at the tokens generated in this round (the input may hold an earlier ``</search>``). One instance
    serves one ``generate`` call: a row it has stopped stays stopped (``generate`` never resumes a
    finished row), so only the rows still open are decoded at each step.
    """

    def __init__(self, tokenizer, input_width: int, stops: tuple[str, ...], window: int = 16):
        self.tokenizer, self.input_width, self.stops, self.window = tokenizer, input_width, stops, window
        self.stopped: torch.Tensor | None = None  # (B,) bool, from the first call on

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.stopped is None:
            self.stopped = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        open_rows = (~self.stopped).nonzero().flatten()
        if len(open_rows):
            new = input_ids[open_rows, self.input_width :]  # (B_open, T_new)
            tails = self.tokenizer.batch_decode(new[:, -self.window :], skip_special_tokens=True)
            hits = torch.tensor(
                [any(stop in tail for stop in self.stops) for tail in tails], dtype=torch.bool
            )
            self.stopped[open_rows[hits.to(open_rows.device)]] = True
        return self.stopped.clone()


class _ToolDecisions(LogitsProcessor):
    """Per row, enforces a tool decision on the sampled tokens (the model still picks the rest).

    ``search``: while the completion is shorter than the search tag, only the tag's next token may
    be sampled (the agent opens with a search call, then writes its query itself). ``answer``: the
    tag's last token is banned whenever the tokens before it spell the rest of the tag, so no
    search call can open. Rows with None are untouched.
    """

    def __init__(self, open_ids: list[int], decisions: list[str | None], done: list[int], input_width: int):
        self.open_ids, self.decisions, self.done, self.input_width = open_ids, decisions, done, input_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids.shape[1] - self.input_width  # tokens sampled in this round
        n = len(self.open_ids)
        for row, decision in enumerate(self.decisions):
            position = self.done[row] + generated  # tokens of the completion before this one
            if decision == SEARCH and position < n:
                allowed = scores[row, self.open_ids[position]].clone()
                scores[row] = float("-inf")
                scores[row, self.open_ids[position]] = allowed
            elif decision == ANSWER:
                before = input_ids[row, input_ids.shape[1] - (n - 1) :].tolist() if n > 1 else []
                if before == self.open_ids[:-1]:
                    scores[row, self.open_ids[-1]] = float("-inf")  # (B, V) row: the tag cannot close
        return scores


def _decision_processor(
    tokenizer, active: list[Episode], width: int, protocol: Protocol
) -> LogitsProcessorList | None:
    decisions = [e.decision for e in active]
    if not any(decisions):
        return None
    open_ids = tokenizer(protocol.tool_open, add_special_tokens=False)["input_ids"]
    return LogitsProcessorList(
        [_ToolDecisions(open_ids, decisions, [len(e.completion_ids) for e in active], width)]
    )


def _stop_reached(text: str, stops: tuple[str, ...]) -> str | None:
    """The stop string a finished generation round ended on (the last one in ``text``), if any."""
    found = [(text.rfind(stop), stop) for stop in stops if stop in text]
    return max(found)[1] if found else None


def _strip_padding(tokenizer, new_ids: list[int]) -> list[int]:
    """Drop what ``generate`` appended after a sequence ended (its end-of-sequence token is kept)."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    for i, token in enumerate(new_ids):
        if token == eos:
            return new_ids[: i + 1]
        if token == pad:
            return new_ids[:i]
    return new_ids


@torch.no_grad()
def rollout(
    model,
    tokenizer,
    queries: Sequence[Query],
    tools: Sequence[Tool | None],
    settings: GenerationSettings,
    contexts: Sequence[Sequence[str]] | None = None,
    decisions: Sequence[str | None] | None = None,
    protocol: Protocol | None = None,
    reuse_cache: bool = True,
    sampler: Sampler | None = None,
    drop_ended_rows: bool = True,
    share_prefix: bool = True,
) -> list[Episode]:
    """Generate one episode per query (repeat a query in ``queries`` for a group).

    ``tools[i]`` answers query i's searches (None: the tool replies with no result);
    ``contexts[i]`` are the notes a paradigm places in query i's prompt; ``decisions[i]``
    (``search``, ``answer`` or None) is a tool decision taken outside the model, enforced on the
    sampled tokens (only for queries offered the tool); ``protocol`` (default ``grammar``) writes
    the prompts and reads the tool calls. Sampling uses torch's global RNG, so a seeded run is
    reproducible. ``reuse_cache=False`` recomputes the whole prefix in every round after a tool
    reply (the former path, kept as the reference the cached one is tested and measured against; a
    greedy round still reads the prompt prefix its rows share once, see ``share_prefix``); both draw
    the same random numbers in the same order. ``drop_ended_rows=False`` has greedy decoding compute
    every row until the batch's last one ends (``generate``'s way, the reference
    ``paradigms.open_rows`` is tested against; sampling always does). ``share_prefix=False`` has a
    greedy round without a carried cache prefill the prompt prefix every row shares once per row (the
    reference ``paradigms.shared_prefix`` is tested against; sampling always does). ``sampler`` draws
    the tokens instead of ``model.generate`` (then ``model`` only places the tensors; tool decisions
    are the model's own, so ``decisions`` must be None).
    """
    protocol = protocol or PROTOCOLS["grammar"]
    contexts = contexts or [()] * len(queries)
    decisions = [
        d if q.search_enabled else None
        for q, d in zip(queries, decisions or [None] * len(queries), strict=True)
    ]
    if sampler is not None and any(decisions):
        raise ValueError("rollout: a sampler cannot enforce tool decisions; pass decisions=None with it")
    episodes: list[Episode] = []
    for query, notes, decision in zip(queries, contexts, decisions, strict=True):
        prompt = protocol.render_prompt(query, list(notes), tokenizer)
        context_tokens = (
            len(tokenizer(" ".join(notes), add_special_tokens=False)["input_ids"]) if notes else 0
        )
        episodes.append(
            Episode(
                prompt,
                protocol.encode_prompt(prompt, tokenizer),
                context_tokens=context_tokens,
                decision=decision,
            )
        )

    device = next(model.parameters()).device
    carried: tool_cache.CarriedCache | None = None
    with evaluation_mode(model):
        for _ in range(settings.max_searches + 2):
            active = [i for i, e in enumerate(episodes) if not e.finished]
            if not active:
                break
            carried = _generate_round(
                model,
                tokenizer,
                [episodes[i] for i in active],
                [tools[i] for i in active],
                settings,
                device,
                protocol,
                keys=active,
                carried=carried if reuse_cache else None,
                sampler=sampler,
                drop_ended_rows=drop_ended_rows,
                share_prefix=share_prefix,
            )
    for episode in episodes:
        episode.completion = protocol.transcript(episode, tokenizer)
    return episodes


@contextmanager
def evaluation_mode(*models: torch.nn.Module) -> Iterator[None]:
    """The models in evaluation mode inside the block (no dropout draws), each back in its own mode after."""
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    try:
        yield
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)


def _generate_round(
    model,
    tokenizer,
    active: list[Episode],
    tools: list[Tool | None],
    settings,
    device,
    protocol: Protocol,
    keys: list[int],
    carried: tool_cache.CarriedCache | None,
    sampler: Sampler | None = None,
    drop_ended_rows: bool = True,
    share_prefix: bool = True,
) -> tool_cache.CarriedCache | None:
    """One ``generate`` call (or one ``sampler`` call) for every unfinished episode; handles a search call
    at its end.

    ``keys[i]`` identifies ``active[i]`` across rounds; ``carried`` is the previous round's cache (None:
    compute every token). Returns this round's cache for the next round (None with a sampler).
    """
    sequences = [e.prompt_ids + e.completion_ids for e in active]
    width = max(len(s) for s in sequences)
    budget = settings.max_new_tokens - min(len(e.env_mask) for e in active)
    output, logprobs = None, None
    if sampler is None:
        output = _generate(
            model,
            tokenizer,
            active,
            sequences,
            budget,
            settings,
            device,
            protocol,
            keys,
            carried,
            drop_ended_rows,
            share_prefix,
        )
        rows = output.sequences[:, width:].tolist()
    else:
        rows, logprobs = sampler.sample(sequences, budget, settings, protocol.stops)
    kept = []
    for index, (row, episode, tool) in enumerate(zip(rows, active, tools, strict=True)):
        room = settings.max_new_tokens - len(episode.env_mask)
        new_ids = _strip_padding(tokenizer, row[:room])
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        stop = _stop_reached(text, protocol.stops)
        kept.append(len(new_ids))
        episode.completion_ids += new_ids
        episode.env_mask += [1] * len(new_ids)
        if logprobs is not None:
            episode.sampling_logprobs = (episode.sampling_logprobs or []) + logprobs[index][: len(new_ids)]
        if stop == protocol.tool_close:
            episode.search_queries.append(protocol.parse_tool_call(text))
            allowed = tool is not None and episode.search_calls <= settings.max_searches
            results = tool(episode.search_queries[-1]) if allowed else []
            episode.tool_results.append(results)
            reply_ids = tokenizer(protocol.tool_reply(results, tokenizer), add_special_tokens=False)[
                "input_ids"
            ]
            episode.completion_ids += reply_ids
            episode.env_mask += [0] * len(reply_ids)
            if logprobs is not None:
                episode.sampling_logprobs += [0.0] * len(reply_ids)
            episode.finished = len(episode.env_mask) >= settings.max_new_tokens
        else:
            episode.finished = True
    if output is None or all(e.finished for e in active):
        return None
    return tool_cache.carry(tool_cache.output_cache(output), keys, width, [len(s) for s in sequences], kept)


def _generate(
    model,
    tokenizer,
    active: list[Episode],
    sequences: list[list[int]],
    budget: int,
    settings: GenerationSettings,
    device,
    protocol: Protocol,
    keys: list[int],
    carried: tool_cache.CarriedCache | None,
    drop_ended_rows: bool = True,
    share_prefix: bool = True,
):
    """``model.generate`` (``return_dict_in_generate``) of at most ``budget`` tokens after the left-padded
    ``sequences`` of ``active``, resuming from ``carried`` when given; greedy decoding computes only the
    rows that have not ended unless ``drop_ended_rows`` is False (``paradigms.open_rows``), and without
    ``carried`` reads the prefix every row shares once unless ``share_prefix`` is False
    (``paradigms.shared_prefix``)."""
    width = max(len(s) for s in sequences)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=device)
    attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
    sampling = settings.temperature > 0
    eos = tokenizer.eos_token_id
    # padding is not something an agent can say: a sampled pad would end the row unseen (an empty
    # completion, which TRL's trainers cannot score), so it is never sampled unless it doubles as eos
    never = [pad] if pad is not None and pad != eos else None
    if carried is None and share_prefix and not sampling:
        carried = shared_prefix.carried(model, sequences, keys, device)
    cache = tool_cache.resume(carried, keys, [len(s) for s in sequences], width) if carried else None
    skipping = nullcontext()
    if drop_ended_rows and not sampling:
        skipping = open_rows.computing_open_rows(model, pad)
    with skipping:
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=budget,
            do_sample=sampling,
            temperature=settings.temperature if sampling else None,
            top_k=settings.top_k if sampling and settings.top_k else None,
            top_p=None,
            stopping_criteria=StoppingCriteriaList([_StopOnStrings(tokenizer, width, protocol.stops)]),
            logits_processor=_decision_processor(tokenizer, active, width, protocol),
            suppress_tokens=never,
            pad_token_id=pad,
            eos_token_id=eos,
            return_dict_in_generate=True,
            **({tool_cache.CACHE_FIELD: cache} if cache is not None else {}),
        )
    return output
