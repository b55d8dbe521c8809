"""``hybrid``: a memory store for facts and a LoRA adapter for habits, learning from one stream.

The agent answers with the adapted model (the frozen base plus ``adapter``'s LoRA, trained by the
config's algorithm through the shared RL engine, ``paradigms/rl``) and the top-k memories of a
``memory`` store in its prompt (the memory paradigm's store, retrieval and reflection, reused as
they are). Every batch is answered once, through the one rollout and scorer; its feedback then goes
where ``route`` sends it:

- ``kind`` (default): **facts to memory, habits to the adapter.** Responses to questions about the
  user's private facts (``fact:*`` items: values that change and must be recalled exactly) are
  written to memory; responses to world questions (whose lesson is the user's answer-format habit,
  or a world value) train the adapter. The motivating split: facts that change belong in an
  external store, stable habits in weights.
- ``feedback``: **corrections to memory, rewards to the adapter.** Every corrected response is
  written to memory; every response trains the adapter on its reward, with the correction withheld
  (so ``sft``, which learns from corrections alone, is refused with this route).
- ``both``: everything to both: memory writes what its ``write_policy`` admits of every response,
  and the adapter trains on every response with its correction.

The memory part sees the untouched base: retrieval (a ``backbone`` embedder) and reflection (the
``llm`` lesson writer) run with the adapter switched off, so memory is written and read exactly as
the ``memory`` paradigm writes and reads it, and its keys do not drift as the adapter trains. With
groups (``algorithm.group_size`` G), memory sees all G responses to an item (identical lessons are
deduplicated by the store).

The cost ledger adds both parts: storage is the store plus the adapter, train FLOPs the adapter's
updates (with any ``continual:`` terms) plus what the memory part counts (its reflection and note
embeddings), inference FLOPs the memory part's retrieval embeddings beside the rollout's, trainable
parameters the adapter's; the notes' tokens are counted per query by the rollout like any
paradigm's context.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from paradigms.adapter import Adapter
from paradigms.memory.paradigm import Memory
from paradigms.session import Interaction, Session
from paradigms.settings import HybridSettings
from tasks.items import Item


def is_fact(item: Item) -> bool:
    """Whether ``item`` asks one of the user's private facts (what ``route: kind`` sends to memory)."""
    return item.item.startswith("fact:")


class Hybrid(Adapter):
    Settings = HybridSettings
    notes_in_prompt = True
    #: its evaluation answers with the adapter and the memory part's notes; it writes nothing but the
    #: evaluator's question vectors, which a forked copy hands back (``evaluation_keeps``)
    evaluation_writes_no_state = True
    artifact_name = "adapter"

    def __init__(self, settings: HybridSettings, backbone, algorithm):
        super().__init__(settings, backbone, algorithm)  # the LoRA policy and the algorithm's learner
        self.memory = Memory(settings.memory, backbone)
        self.memory_events, self.adapter_events = 0, 0

    def bind(self, session: Session) -> None:
        """Attach the session to both parts: the memory part keeps the evaluator's question vectors only
        for a session that keeps answers (``Memory._question_vector``); unbound, it embedded every
        evaluation question again at every evaluation (2.3 s of each 3 s builtin evaluation)."""
        super().bind(session)
        self.memory.bind(session)

    def evaluation_keeps(self) -> dict:
        return self.memory.evaluation_keeps()

    def adopt_evaluation_keeps(self, kept: dict) -> None:
        self.memory.adopt_evaluation_keeps(kept)

    def evaluation_state(self) -> None:
        """Not said: the memory part's store, index and counters change too (each evaluation forks)."""
        return None

    def _base_only(self) -> AbstractContextManager:
        """The adapter switched off: what the memory part reads and writes with."""
        return self.policy.disable_adapter()

    # -- acting ----------------------------------------------------------------------------------
    def context_for(self, items: Sequence[Item]) -> list[list[str]]:
        with self._base_only():
            return self.memory.context_for(items)

    def training_contexts(self, items: Sequence[Item]) -> list[list[str]]:
        with self._base_only():
            return self.memory.retrieve(items, update_counts=True)

    # -- routing ---------------------------------------------------------------------------------
    def trains_on(self, interaction: Interaction) -> list[bool]:
        if self.settings.route == "kind":
            return [not is_fact(item) for item in interaction.items]
        return [True] * interaction.feedback_events

    def weight_feedback(self, interaction: Interaction) -> Interaction:
        if self.settings.route != "feedback":
            return interaction
        return Interaction(
            interaction.items,
            interaction.episodes,
            interaction.rewards,
            interaction.components,
            [None] * interaction.feedback_events,
            interaction.phase,
            [None] * interaction.feedback_events,
        )

    def remembers(self, interaction: Interaction) -> list[bool]:
        """Per response: whether memory learns from it."""
        if self.settings.route == "kind":
            return [is_fact(item) for item in interaction.items]
        if self.settings.route == "feedback":
            return [correction is not None for correction in interaction.corrections]
        return [True] * interaction.feedback_events

    def after_update(self, interaction: Interaction, events: int) -> None:
        """Write what the route sends to memory (reflected by the untouched base)."""
        remembered = interaction.select(self.remembers(interaction))
        self.memory_events += remembered.feedback_events
        self.adapter_events += sum(self.trains_on(interaction))
        if remembered.feedback_events:
            with self._base_only():
                self.memory.write(remembered, events)

    # -- accounting ------------------------------------------------------------------------------
    def storage_bytes(self) -> int:
        return super().storage_bytes() + self.memory.storage_bytes()

    def train_flops(self) -> float:
        return super().train_flops() + self.memory.train_flops()

    def inference_flops(self) -> float:
        return super().inference_flops() + self.memory.inference_flops()

    def extra_metrics(self) -> dict[str, float]:
        return {
            **self.memory.extra_metrics(),
            "hybrid/memory_events": float(self.memory_events),
            "hybrid/adapter_events": float(self.adapter_events),
        }

    def save(self, directory: Path) -> list[Path]:
        return super().save(directory) + self.memory.save(directory)
