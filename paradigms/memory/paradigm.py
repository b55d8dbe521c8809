"""``memory``: the model never changes; the agent learns by writing lessons to an external store
and retrieving the most similar ones into its prompt.

After each batch of feedback, every interaction the write policy admits is reflected on (see
``reflection.py``) and the result is written to a FAISS-backed ``MemoryStore``. Before answering,
the top-k memories most similar to the question are placed in the prompt as notes, through the
shared rollout, and counted as context tokens.

Its compute ledger: ``inference_flops`` are the embeddings of the questions it retrieves for while
answering the stream (the rollout's own FLOPs are counted by the runner for every paradigm);
``train_flops`` what learning costs: the reflection model's generation (``llm``) and the embedding of
every note written. The evaluator's retrievals are measurement, counted in neither.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from paradigms.base import Paradigm
from paradigms.compute import forward_flops, parameter_count
from paradigms.memory import reflection
from paradigms.memory.embedders import make_embedder
from paradigms.memory.settings import MemorySettings
from paradigms.memory.store import MemoryRecord, MemoryStore, as_matrix
from paradigms.session import Interaction, Session
from tasks.items import Item


class Memory(Paradigm):
    Settings = MemorySettings
    notes_in_prompt = True
    #: its evaluation retrieves without recording (no counts, no latencies) and writes nothing but the
    #: evaluator's question vectors, which a forked copy hands back (``evaluation_keeps``)
    evaluation_writes_no_state = True

    def __init__(self, settings: MemorySettings, backbone, algorithm=None):
        super().__init__(settings, backbone, algorithm)
        self.embedder = make_embedder(settings.embedder, backbone.model, backbone.tokenizer)
        self.store = MemoryStore(settings.store(self.embedder.dim), self.embedder)
        self.latencies_ms: list[float] = []
        self.relevant, self.retrieved = 0, 0
        self.lessons_written = 0
        self.answer_flops, self.learn_flops = 0.0, 0.0
        self.reflection_flops = 0.0  # the part of learn_flops the reflection model's generation took
        #: The evaluator's questions, embedded once each (a ``fixed`` embedder only; see ``retrieve``).
        self._question_vectors: dict[str, np.ndarray] = {}

    # -- acting --------------------------------------------------------------------------------
    def retrieve(self, items: Sequence[Item], update_counts: bool) -> list[list[str]]:
        """The texts of the top-k memories for each item's question (those at ``min_similarity`` or above).

        ``update_counts`` records the retrieval (counts for ``least_retrieved`` eviction, relevance and
        latency figures); the evaluator's reads leave them untouched. The evaluator asks the same
        questions at every evaluation: with a ``fixed`` embedder their vectors are computed once and
        kept (the same vectors, so the same hits; evaluation FLOPs are counted nowhere anyway).
        """
        contexts, embedded = [], self.embedder.flops
        for item in items:
            started = time.perf_counter()
            question = self.protocol.question_text(item.query)
            query = question if update_counts else self._question_vector(question)
            hits = self.store.search(query, self.settings.top_k, update_counts=update_counts)
            kept = [record for record, score in hits if score >= self.settings.min_similarity]
            if update_counts:  # the stream's retrievals, what answering the user costs
                self.latencies_ms.append(1000 * (time.perf_counter() - started))
                self.retrieved += len(kept)
                self.relevant += sum(_relevant(record.key, item) for record in kept)
            contexts.append([record.text for record in kept])
        if update_counts:
            self.answer_flops += self.embedder.flops - embedded
        return contexts

    def _question_vector(self, question: str) -> str | np.ndarray:
        """An evaluation question's vector, as the store would embed it, kept when the embedder is
        ``fixed`` (the question itself otherwise, or when the session keeps no answers either:
        ``experiments.run.execute(answer_cache=False)``). Embedded at the first evaluation, even while the
        store is empty and a search needs no vector: a run evaluated beside training (a hybrid's) embeds
        them in the first copy, which has little else to do, not in a later one that would keep the run
        waiting (0.6 s of a 9 s builtin hybrid run)."""
        keeps = self.session is not None and self.session.answers is not None
        if not keeps or not getattr(self.embedder, "fixed", False) or self.settings.top_k <= 0:
            return question
        vector = self._question_vectors.get(question)
        if vector is None:
            vector = as_matrix(self.embedder.embed([question]), self.store.settings.dim)
            self._question_vectors[question] = vector
        return vector

    def context_for(self, items: Sequence[Item]) -> list[list[str]]:
        """The top-k memories for each question; evaluation leaves retrieval counts untouched."""
        return self.retrieve(items, update_counts=False)

    def evaluation_keeps(self) -> dict[str, dict[str, np.ndarray]]:
        """The evaluator's question vectors computed so far (``_question_vector``)."""
        return {"question_vectors": self._question_vectors}

    def adopt_evaluation_keeps(self, kept: dict[str, dict[str, np.ndarray]]) -> None:
        self._question_vectors.update(kept.get("question_vectors", {}))

    # -- learning ------------------------------------------------------------------------------
    def train(self, session: Session) -> None:
        while not session.done:
            items = session.next_items(min(session.batch_size, session.remaining))
            interaction, metrics = self.answer_batch(session, items, self.retrieve(items, True))
            self.write(interaction, session.events + interaction.feedback_events)
            session.record(interaction, metrics)

    def _admits(self, components: dict[str, float], correction: str | None) -> bool:
        policy = self.settings.write_policy
        if policy == "failures":
            return not reflection.succeeded(components)
        if policy == "corrected":
            return correction is not None
        return True

    def write(self, interaction: Interaction, now: int) -> None:
        """Reflect on every interaction the write policy admits and store what it teaches (at time ``now``,
        in feedback events); the reflection's and the notes' embedding FLOPs go to ``train_flops``."""
        embedded = self.embedder.flops
        chosen = []
        for index, (item, episode, correction) in enumerate(
            zip(interaction.items, interaction.episodes, interaction.corrections, strict=True)
        ):
            components = {name: values[index] for name, values in interaction.components.items()}
            if self._admits(components, correction):
                chosen.append((index, item, episode, components, correction))
        texts = self._lessons(chosen, _feedback_texts(interaction))
        for (index, _item, episode, components, correction), text in zip(chosen, texts, strict=True):
            if text is None:
                continue
            lesson = text if self.settings.reflection != "none" else None
            self.store.add(
                MemoryRecord(
                    text=text,
                    key=reflection.key_of(text, self.protocol),
                    query=episode.prompt,
                    response=episode.completion,
                    reward=interaction.rewards[index],
                    components=components,
                    correction=_feedback_texts(interaction)[index] if correction is not None else None,
                    lesson=lesson,
                    time=now,
                )
            )
            self.lessons_written += lesson is not None
        self.learn_flops += self.embedder.flops - embedded

    def _lessons(self, chosen, feedback: list[str | None]) -> list[str | None]:
        """One lesson per chosen interaction (``feedback[i]``: interaction i's correction, user's words)."""
        mode = self.settings.reflection
        protocol = self.protocol
        if mode == "template":
            return [
                reflection.template_lesson(item, e.completion, c, corr, protocol)
                for _, item, e, c, corr in chosen
            ]
        if mode == "none":
            return [reflection.raw_experience(item, e.completion, c, protocol) for _, item, e, c, _ in chosen]
        prompts = [
            reflection.reflection_prompt(
                item, e.completion, c, corr, protocol, self.tokenizer, feedback=feedback[index]
            )
            for index, item, e, c, corr in chosen
        ]
        return reflection.llm_lessons(self.model, self.tokenizer, prompts, protocol, self._count_reflection)

    def _count_reflection(self, tokens: int) -> None:
        flops = forward_flops(parameter_count(self.model), tokens)
        self.learn_flops += flops
        self.reflection_flops += flops

    # -- accounting ----------------------------------------------------------------------------
    def storage_bytes(self) -> int:
        return self.store.nbytes()

    def train_flops(self) -> float:
        return self.learn_flops

    def inference_flops(self) -> float:
        return self.answer_flops

    def extra_metrics(self) -> dict[str, float]:
        latencies = np.array(self.latencies_ms or [0.0])
        return {
            "memory/store_entries": float(len(self.store)),
            "memory/store_bytes": float(self.store.nbytes()),
            "memory/lessons_written": float(self.lessons_written),
            "memory/retrieval_latency_p50_ms": float(np.percentile(latencies, 50)),
            "memory/retrieval_latency_p95_ms": float(np.percentile(latencies, 95)),
            "memory/retrieval_relevance": self.relevant / self.retrieved if self.retrieved else 0.0,
            # the ledger's memory parts: reflection (in cost/train_flops), the notes' embeddings (in
            # cost/train_flops) and the questions' embeddings for retrieval (in cost/inference_flops)
            "memory/reflection_flops": self.reflection_flops,
            "memory/note_embedding_flops": self.learn_flops - self.reflection_flops,
            "memory/retrieval_embedding_flops": self.answer_flops,
        }

    def save(self, directory: Path) -> list[Path]:
        path = self.store.save(Path(directory) / "memory")
        return sorted(p for p in Path(path).iterdir()) + self.save_tool_policy(directory)


def _feedback_texts(interaction: Interaction) -> list[str | None]:
    """Each response's correction in the user's words (the protocol's wording, or a user log's own)."""
    if interaction.correction_texts:
        return list(interaction.correction_texts)
    return [None] * len(interaction.episodes)


def _relevant(key: str | None, item: Item) -> bool:
    """A retrieved memory is relevant when it is about what the item asks (its fact or its format)."""
    if key is None:
        return False
    kind, *rest = item.item.split(":")
    if kind == "fact":
        return key == item.item
    return key in (f"format:{rest[1]}", item.item)
