"""The one evaluator: every paradigm is measured by this code, on the same items, the same way.

``Evaluator.evaluate`` answers the held-out personal items and the general probes through the
shared rollout (greedy by default) with the paradigm's own context, scores them with the shared
reward functions, and returns DESIGN.md's metrics. ``Evaluator.measure_base`` answers the general
probes once, before training, with the untouched base and no paradigm context: forgetting is the
drop from that (``analysis.stats.forgetting``), on world knowledge (``eval/forgetting``) and on
following an explicit format request (``eval/instruction_forgetting``). ``base_competence``
measures the builtin base's skills with the same rollout and scorer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from analysis.stats import forgetting
from experiments import metrics as m
from experiments.peak_memory import peak_rss_bytes
from paradigms import shared_prefix
from paradigms.agent import Episode, GenerationSettings, evaluation_mode, rollout
from paradigms.answer_cache import same_computation
from paradigms.base import Paradigm
from paradigms.lora_identity import adds_nothing_to
from paradigms.rl.batching import collate
from paradigms.session import Call, Interaction, Session, item_columns
from paradigms.tool_cache import CACHE_FIELD
from tasks import probes
from tasks.items import Item
from tasks.protocols import PROTOCOLS, USER_SUBJECT, Protocol, Statement
from tasks.rewards import score
from tasks.search import SearchTool
from tasks.worlds import WorldView, builtin_world


def exact(interaction: Interaction) -> list[float]:
    """Per response: 1 when the value is right and the answer is in the wanted format."""
    return [
        c * f
        for c, f in zip(interaction.components["correctness"], interaction.components["format"], strict=True)
    ]


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


#: At most this many logits (sequences x positions x vocabulary) per forward pass of the KL: a real
#: model's 49k-token vocabulary made the full (64, T, V) tensors ~2 GB each and a SmolLM2 run's
#: evaluation peak at 11-15 GB resident.
KL_LOGITS_PER_PASS = 2**27


def kl_to_reference(model, reference, tokenizer, episodes: Sequence[Episode], batch_size: int = 64) -> float:
    """Mean per-token KL(policy || reference) over the agent's own tokens of ``episodes``.

    Both models read the same prompt and completion, in evaluation mode as the rollout answers (no
    dropout); tool tokens (env mask 0) are left out. Exactly 0 when the two models compute the same
    function, and then returned without a forward pass: a copy of the reference
    (``paradigms.answer_cache.same_computation``: a ``full_ft`` run's first evaluation) or a LoRA wrapper
    of one whose adapter adds exactly zero (``paradigms.lora_identity.adds_nothing_to``: an ``adapter`` or
    ``hybrid`` run's first evaluation, before any update has moved ``lora_B`` from its zeros). At most
    ``batch_size`` sequences, and at most :data:`KL_LOGITS_PER_PASS` logits, per forward pass; the LM head
    projects only the positions from the first agent token of the pass on (``logits_to_keep``), the
    softmax only the agent's positions; a prefix every row of a pass shares is read once when long
    enough (:func:`_kept_logits`, ``paradigms.shared_prefix.worth_reading_once``).
    The model must take ``logits_to_keep`` (every Hugging Face causal LM that generates does).
    """
    with evaluation_mode(model, reference):
        if computes_as_reference(model, reference):
            return 0.0  # every log-probability difference would be exactly 0
        return _mean_kl(model, reference, tokenizer, episodes, batch_size)


def computes_as_reference(model, reference) -> bool:
    """Whether ``model`` computes exactly what ``reference`` computes, as :func:`kl_to_reference` reads
    them: a copy of it, or a LoRA wrapper of one whose adapter adds exactly zero."""
    return same_computation(model, reference) or adds_nothing_to(model, reference)


@torch.no_grad()
def _mean_kl(model, reference, tokenizer, episodes: Sequence[Episode], batch_size: int) -> float:
    """:func:`kl_to_reference`'s forward passes, with both models as they are."""
    total, count = 0.0, 0
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    vocabulary = model.get_output_embeddings().weight.shape[0]
    start = 0
    while start < len(episodes):
        width = max(len(e.prompt_ids) + len(e.completion_ids) for e in episodes[start : start + batch_size])
        rows = max(1, min(batch_size, KL_LOGITS_PER_PASS // (width * vocabulary)))
        chunk = episodes[start : start + rows]
        start += rows
        batch = collate(chunk, pad, device)
        ids, attention = batch.input_ids, batch.attention_mask  # (B, T) right-padded
        width = ids.shape[1]
        # agent[b, t] where token t+1 is an agent token: logits at t predict token t+1
        agent = torch.zeros_like(ids, dtype=torch.bool)  # (B, T)
        for b, episode in enumerate(chunk):
            start_t = len(episode.prompt_ids) - 1
            mask = torch.tensor(episode.env_mask, dtype=torch.bool)
            agent[b, start_t : start_t + len(episode.env_mask)] = mask
        if not agent.any():
            continue
        # the LM head only from the first position any row needs (the prompts': most of the width)
        first = int(agent.any(0).nonzero()[0])
        keep = width - first
        kept = agent[:, first:]  # (B, keep)
        # a prefix of the prompts every row shares, when long enough to pay for the extra pass
        shared = shared_prefix.worth_reading_once([e.prompt_ids + e.completion_ids for e in chunk], first)
        policy_logits = _kept_logits(model, ids, attention, keep, shared)[kept]
        logp = torch.log_softmax(policy_logits.float(), -1)  # (N, V)
        reference_logits = _kept_logits(reference, ids, attention, keep, shared)
        logq = torch.log_softmax(reference_logits[kept].float(), -1)
        total += float((logp.exp() * (logp - logq)).sum())
        count += int(agent.sum())
    return total / max(count, 1)


def _kept_logits(model, ids: torch.Tensor, attention: torch.Tensor, keep: int, shared: int) -> torch.Tensor:
    """The logits of the last ``keep`` columns of right-padded ``ids`` (B, T): ``(B, keep, V)``.

    When the rows share their first ``shared`` tokens (a chat template's system message and tool
    instructions: 54 of a SmolLM2 evaluation's ~67 prompt tokens), the model reads that prefix once for
    one row and every row continues from its repeated keys and values; columns, positions and the
    attention mask are those of one full pass, so the logits equal its logits to the rounding of a
    differently shaped matrix product (on SmolLM2 runs, 2.6e-7 and 1.1e-5 relative on
    ``eval/kl_to_base``: a KL of 7e-4 moved by 8e-9). One full pass when
    nothing is shared, the batch has one row, or the model returns no cache that can be repeated.
    """
    if shared >= 1 and ids.shape[0] > 1:
        prefix = model(input_ids=ids[:1, :shared], attention_mask=attention[:1, :shared], use_cache=True)
        cache = getattr(prefix, CACHE_FIELD, None)
        if isinstance(cache, DynamicCache):
            cache.batch_repeat_interleave(ids.shape[0])
            return model(
                input_ids=ids[:, shared:],
                attention_mask=attention,
                use_cache=False,
                logits_to_keep=keep,
                **{CACHE_FIELD: cache},
            ).logits
    return model(input_ids=ids, attention_mask=attention, logits_to_keep=keep).logits


#: Backbones up to this many parameters answer an evaluation's parts in one batch, bigger ones one batch
#: per part. A forward pass of the builtin base (350 k parameters) costs about the same for 1 or 200 rows,
#: so one batch nearly halves its evaluations (``full_ft`` + ``grpo``: 0.42 s against 0.26 s); a
#: real model's pass costs in proportion to rows x positions, and one batch pads every part's prompts to
#: the longest and runs every row to the longest answer (SmolLM2-135M, an ``adapter`` evaluation: 141 s
#: per part against 172 s together at a run's start, 132 s against 129 s after 16 events).
#: ``benchmarks/eval_batching.py`` measures it; ``docs/performance.md`` has the figures.
PARTS_TOGETHER_MAX_PARAMETERS = 10_000_000


@dataclass
class Evaluator:
    """Evaluates a paradigm's current policy on a run's fixed evaluation items.

    ``personal_rows`` are phase-independent rows resolved against the user's profile at the
    time of evaluation; ``general`` is the general probe; ``phases[j]`` the items whose value
    was set in drift phase j and never changed later (empty for single-phase suites), answered in
    phase j's world (the user's profile and search tool as they were in phase j) whenever the
    evaluation happens; ``updated[t]`` the items the user has changed by phase t, against their
    value then (``eval/updating_accuracy``, answered in phase t's world);
    ``reference`` the untouched base of a paradigm that changes weights (None for the others, which
    then log no ``eval/kl_to_base``); ``instructions`` the suite's own questions with an explicit
    format request (scored on the format: ``eval/instruction_following``), answered in phase 0's world,
    the world they are resolved in; ``knowledge`` the knowledge probe (``tasks.probes.knowledge_probe``,
    scored on the value: ``eval/general_knowledge``, what ``eval/forgetting`` is measured on). The
    ``base_*`` fields are the untouched base's values (:meth:`measure_base`, before any evaluation).
    ``parts_together`` answers an evaluation's parts in one batched rollout (else one per part; the same
    answers to floating-point rounding, a question of speed: :data:`PARTS_TOGETHER_MAX_PARAMETERS`).
    """

    session: Session
    personal_rows: list[dict]
    general: list[Item]
    phases: list[list[Item]]
    settings: GenerationSettings
    reference: object | None = None
    instructions: list[Item] = field(default_factory=list)
    updated: list[list[Item]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    base_general_accuracy: float | None = None
    knowledge: list[Item] = field(default_factory=list)
    base_general_knowledge: float | None = None
    base_instruction_following: float | None = None
    parts_together: bool = True

    def measure_base(self, model, tokenizer) -> dict[str, float]:
        """The untouched base's probe scores (no notes, no tool policy), kept and returned by metric name.

        Call it once, before a paradigm wraps or trains ``model``; every later ``eval/forgetting`` and
        ``eval/instruction_forgetting`` is measured against it. Same items, settings, rollout and scorer
        as :meth:`evaluate`'s probes.
        """
        if not self.knowledge:
            raise ValueError("Evaluator.knowledge is empty: pass tasks.probes.knowledge_probe(world)")
        probe = [*self.general, *self.knowledge]
        interaction = self.session.interact(
            model, tokenizer, probe, [[] for _ in probe], settings=self.settings, search=False
        )
        self.base_general_accuracy, self.base_general_knowledge = self._probe_scores(interaction)
        measured = {
            m.BASE_GENERAL_ACCURACY: self.base_general_accuracy,
            m.BASE_GENERAL_KNOWLEDGE: self.base_general_knowledge,
        }
        if self.instructions:
            with self.session.as_of(0):
                instructed = self.session.interact(
                    model,
                    tokenizer,
                    self.instructions,
                    [[] for _ in self.instructions],
                    settings=self.settings,
                )
            self.base_instruction_following = _mean(instructed.components["format"])
            measured[m.BASE_INSTRUCTION_FOLLOWING] = self.base_instruction_following
        return measured

    def use_base(self, measured: dict[str, float]) -> None:
        """Keep the base's scores :meth:`measure_base` returned elsewhere (in a forked copy of the run)."""
        self.base_general_accuracy = measured[m.BASE_GENERAL_ACCURACY]
        self.base_general_knowledge = measured[m.BASE_GENERAL_KNOWLEDGE]
        self.base_instruction_following = measured.get(m.BASE_INSTRUCTION_FOLLOWING)

    def _probe_scores(self, interaction: Interaction) -> tuple[float, float]:
        """(general accuracy, general knowledge) of one interaction answering ``general + knowledge``."""
        n = len(self.general)
        general = _mean(exact(interaction)[:n])
        return general, _mean(interaction.components["correctness"][n:])

    def _call(
        self,
        paradigm: Paradigm,
        items: list[Item],
        with_tool: bool = True,
        contexts: list[list[str]] | None = None,
        phase: int | None = None,
    ) -> Call:
        """The paradigm's answer to ``items`` as a session call: its notes (``contexts`` when given) and
        tool decisions, taken in drift phase ``phase``'s world (None: the session's now)."""
        with self.session.as_of(phase) if phase is not None else nullcontext():
            contexts = paradigm.context_for(items) if contexts is None else contexts
            decisions = paradigm.tool_decisions(items, contexts, explore=False)
        return Call(items, contexts, with_tool, decisions, phase)

    def _answer_all(self, paradigm: Paradigm, calls: list[Call]) -> list[Interaction]:
        """``calls`` answered by the paradigm's policy now: in one batched rollout of what the cache lacks
        (``parts_together``), or one rollout per call."""
        model, tokenizer = paradigm.model, paradigm.tokenizer
        if self.parts_together:
            return self.session.interact_together(model, tokenizer, calls, self.settings)
        return [self.session.interact_together(model, tokenizer, [c], self.settings)[0] for c in calls]

    def answer_personal(self, paradigm: Paradigm) -> Interaction:
        """The personal evaluation questions answered by the paradigm's policy now, scored: what
        ``eval/personal_accuracy`` (correct value and wanted format) and the search cost are read from."""
        return self._answer_all(paradigm, [self._personal_call(paradigm)])[0]

    def _personal_call(self, paradigm: Paradigm) -> Call:
        return self._call(paradigm, [self.session.resolve(row) for row in self.personal_rows])

    def evaluate(self, paradigm: Paradigm, stream_phase: int | None = None) -> dict[str, float]:
        """DESIGN.md's eval and cost metrics for the paradigm's policy now.

        ``stream_phase`` is the drift phase the policy was trained through (the phase of the last batch
        consumed; None before any): the items the user has changed by then give
        ``eval/updating_accuracy``. Needs :meth:`measure_base` first (forgetting is measured against it).
        Every question of the evaluation (personal, general probe with and without notes, instruction,
        drift-phase and updated items) is answered in one batched rollout (``Session.interact_together``)
        when ``parts_together``, each part in its own world and scored on its own.
        """
        if self.base_general_accuracy is None or self.base_general_knowledge is None:
            raise RuntimeError("Evaluator.measure_base must run before the first evaluation")
        # every part's call, in the order the paradigm is asked for its notes and decisions
        calls: dict[str, Call] = {"personal": self._personal_call(paradigm)}
        probe = [*self.general, *self.knowledge]
        probe_contexts = paradigm.context_for(probe)
        calls["probe"] = self._call(paradigm, probe, with_tool=False, contexts=probe_contexts)
        if paradigm.notes_in_prompt and any(probe_contexts):
            calls["probe_without_notes"] = self._call(
                paradigm, probe, with_tool=False, contexts=[[] for _ in probe]
            )
        if self.instructions:  # the items' world: the base was measured in it too
            calls["instructions"] = self._call(paradigm, self.instructions, phase=0)
        if len(self.phases) > 1:  # phase j's items in phase j's world (tool, profile)
            for j, items in enumerate(self.phases):
                if items:
                    calls[f"phase {j}"] = self._call(paradigm, items, phase=j)
        if stream_phase is not None and stream_phase < len(self.updated) and self.updated[stream_phase]:
            # the changed items against their value now
            calls["updated"] = self._call(paradigm, self.updated[stream_phase], phase=stream_phase)
        answered = dict(zip(calls, self._answer_all(paradigm, list(calls.values())), strict=True))

        personal = answered["personal"]
        general_accuracy, knowledge = self._probe_scores(answered["probe"])
        results = {
            m.PERSONAL_ACCURACY: _mean(exact(personal)),
            m.GENERAL_ACCURACY: general_accuracy,
            m.BASE_GENERAL_ACCURACY: self.base_general_accuracy,
            m.GENERAL_KNOWLEDGE: knowledge,
            m.BASE_GENERAL_KNOWLEDGE: self.base_general_knowledge,
            m.FORGETTING: forgetting(self.base_general_knowledge, knowledge),
            m.FORMAT_COMPLIANCE: _mean(personal.components["format"]),
            m.SEARCH_CALLS_PER_QUERY: _mean([e.search_calls for e in personal.episodes]),
            m.CONTEXT_TOKENS_PER_QUERY: _mean([e.context_tokens for e in personal.episodes]),
            m.WALL_SECONDS: time.perf_counter() - self.started,
            m.TRAIN_FLOPS: paradigm.train_flops(),
            m.TRAINABLE_PARAMS: float(paradigm.trainable_parameters()),
            m.STORAGE_BYTES: float(paradigm.storage_bytes()),
            m.PEAK_RSS_BYTES: float(peak_rss_bytes()),
        }
        if "instructions" in answered:
            following = _mean(answered["instructions"].components["format"])
            results[m.INSTRUCTION_FOLLOWING] = following
            results[m.BASE_INSTRUCTION_FOLLOWING] = self.base_instruction_following
            results[m.INSTRUCTION_FORGETTING] = forgetting(self.base_instruction_following, following)
        if paradigm.notes_in_prompt:  # without notes: the same answers when no probe item has notes now
            bare = answered.get("probe_without_notes", answered["probe"])
            results[m.GENERAL_ACCURACY_WITHOUT_NOTES], results[m.GENERAL_KNOWLEDGE_WITHOUT_NOTES] = (
                self._probe_scores(bare)
            )
        if self.reference is not None:  # only a paradigm whose weights can move has a distance to the base
            results[m.KL_TO_BASE] = kl_to_reference(
                paradigm.model, self.reference, paradigm.tokenizer, personal.episodes
            )
        for j in range(len(self.phases)):
            if f"phase {j}" in answered:
                results[m.PHASE_ACCURACY.format(phase=j)] = _mean(exact(answered[f"phase {j}"]))
        if "updated" in answered:
            results[m.UPDATING_ACCURACY] = _mean(exact(answered["updated"]))
        results.update(paradigm.extra_metrics())
        return results


def answer_probe(
    model, tokenizer, items: list[Item], settings: GenerationSettings, protocol: Protocol | None = None
) -> tuple[list[Episode], dict]:
    """Answer probe items with their own notes; search answers from each item's own fact.

    Returns the episodes and the reward components per item (the shared scorer, no weights).
    """
    protocol = protocol or PROTOCOLS["grammar"]
    tools = [
        SearchTool.over([Statement(USER_SUBJECT, i.item.split(":", 1)[1], i.gold)], protocol)
        if i.needs_search
        else None
        for i in items
    ]
    episodes = rollout(
        model,
        tokenizer,
        [i.query for i in items],
        tools,
        settings,
        [i.notes for i in items],
        protocol=protocol,
    )
    components, _ = score(
        [e.prompt for e in episodes], [e.completion for e in episodes], {}, **item_columns(items, protocol)
    )
    return episodes, components


def base_competence(
    model,
    tokenizer,
    protocol: Protocol | None = None,
    world: WorldView | None = None,
    general: list[Item] | None = None,
    n: int = 200,
) -> dict[str, float]:
    """A backbone's skill figures (greedy, held-out), as logged under ``base/``.

    ``protocol`` and ``world`` default to the builtin base's; ``general`` is the general probe to
    report (default: the world's whole probe); ``n`` items per competence probe.

    - ``general_accuracy``: general probe, right value in the instructed (held-out) format;
    - ``context_reading_accuracy``: the asked fact among 3-5 facts in context, answered right
      without searching;
    - ``search_call_rate``: a search call on a personal question whose fact is not in context;
    - ``needless_search_rate``: a search call on a world question (the base knows the answer);
    - ``format_following``: right value in an explicitly instructed format;
    - ``format_note_following``: the format a context note prefers for the question's kind.
    """
    protocol, world = protocol or PROTOCOLS["grammar"], world or builtin_world()
    greedy = GenerationSettings(max_new_tokens=32, temperature=0.0)

    def answer(items: list[Item]) -> tuple[list[Episode], dict]:
        return answer_probe(model, tokenizer, items, greedy, protocol)

    def exact_share(components: dict) -> float:
        return _mean([a * b for a, b in zip(components["correctness"], components["format"], strict=True)])

    figures: dict[str, float] = {}
    _, c = answer(general if general is not None else probes.general_probe(world=world))
    figures["general_accuracy"] = exact_share(c)
    episodes, c = answer(probes.context_reading_probe(n, protocol=protocol))
    figures["context_reading_accuracy"] = _mean(
        [ok * (e.search_calls == 0) for ok, e in zip(c["correctness"], episodes, strict=True)]
    )
    for name, items in (
        ("search_call_rate", probes.search_probe(n, protocol=protocol)),
        ("needless_search_rate", probes.needless_search_probe(n, world=world)),
    ):
        episodes, _ = answer(items)
        figures[name] = _mean([float(e.search_calls > 0) for e in episodes])
    _, c = answer(probes.format_following_probe(n, world=world))
    figures["format_following"] = exact_share(c)
    _, c = answer(probes.format_note_probe(n, world=world, protocol=protocol))
    figures["format_note_following"] = exact_share(c)
    return figures
