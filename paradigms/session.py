"""The user session a paradigm learns from: the ordered stream, the one rollout, the one scorer.

The runner builds a ``Session`` and hands it to a paradigm's ``train``. The paradigm asks for
the next items, answers them through ``interact`` (the shared rollout, reward scoring and user
feedback), learns however it learns, and calls ``record`` after each batch: that counts the
feedback events and calls the runner's callback, which decides when to evaluate and what to
log. Nothing here knows about MLflow or the runner.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

from datasets import Dataset

from paradigms.agent import Episode, GenerationSettings, Sampler, rollout
from paradigms.answer_cache import AnswerCache, call_identity
from tasks import rewards
from tasks.items import Item
from tasks.protocols import FORMAT_SUBJECT, PROTOCOLS, Protocol, Statement
from tasks.search import SearchTool
from tasks.settings import TaskSettings
from tasks.suites import Suite, phase_at
from tasks.users import User


@dataclass
class Interaction:
    """A batch of scored responses: ``episodes[i]`` answers ``items[i]`` (groups repeat an item).

    ``corrections[i]`` is what the user corrected response i with (None: nothing to correct, or
    scalar feedback); ``correction_texts[i]`` the same in the user's words (the run's protocol).
    """

    items: list[Item]
    episodes: list[Episode]
    rewards: list[float]
    components: dict[str, list[float]]
    corrections: list[Statement | None]
    phase: int
    correction_texts: list[str | None] = field(default_factory=list)

    @property
    def feedback_events(self) -> int:
        return len(self.episodes)

    def select(self, keep: Sequence[bool]) -> Interaction:
        """The responses ``i`` with ``keep[i]``, in order (for a paradigm routing feedback to its parts)."""
        if len(keep) != len(self.episodes):
            raise ValueError(f"keep has {len(keep)} flags for {len(self.episodes)} responses")
        index = [i for i, flag in enumerate(keep) if flag]
        return Interaction(
            [self.items[i] for i in index],
            [self.episodes[i] for i in index],
            [self.rewards[i] for i in index],
            {name: [values[i] for i in index] for name, values in self.components.items()},
            [self.corrections[i] for i in index],
            self.phase,
            [self.correction_texts[i] for i in index] if self.correction_texts else [],
        )


@dataclass(frozen=True)
class Call:
    """One :meth:`Session.interact` call's arguments, for :meth:`Session.interact_together`: ``items``
    answered with ``contexts`` (the notes per item; None: none), the search tool when ``search``, the tool
    ``decisions`` (None: the model's own), in drift phase ``phase``'s world (None: the session's now)."""

    items: Sequence[Item]
    contexts: Sequence[Sequence[str]] | None = None
    search: bool = True
    decisions: Sequence[str | None] | None = None
    phase: int | None = None


@dataclass
class FeedbackReport:
    """What the runner's callback receives after each batch of feedback events."""

    events: int
    interaction: Interaction
    train_metrics: dict[str, float] = field(default_factory=dict)


FeedbackCallback = Callable[[FeedbackReport], None]


class Diverged(RuntimeError):
    """A loss, gradient or the policy's probabilities became NaN or infinite; says when and what to change."""


class BudgetExhausted(Exception):
    """Raised by ``next_items`` when no feedback events remain; paradigms may also poll ``done``."""


class Session:
    """One user's stream under one seed, with a feedback-event budget."""

    def __init__(
        self,
        suite: Suite,
        user: User,
        stream: Dataset,
        options: TaskSettings,
        weights: Mapping[str, float],
        generation: GenerationSettings,
        budget: int,
        batch_size: int,
        on_feedback: FeedbackCallback,
        protocol: Protocol | None = None,
    ):
        self.suite, self.user, self.stream, self.options = suite, user, stream, options
        #: How items become the backbone's text and its text becomes answers (grammar by default).
        self.protocol = protocol or PROTOCOLS["grammar"]
        self.weights, self.generation, self.budget = dict(weights), generation, budget
        #: Queries answered between two learning steps; the same for every paradigm.
        self.batch_size = batch_size
        self.on_feedback = on_feedback
        self.events = 0
        self.position = 0
        self._pinned_phase: int | None = None
        #: Wall seconds spent inside the rollout (generation and tool calls), training and evaluation alike.
        self.generation_seconds = 0.0
        #: Greedy answers served again inside ``fixed_weights`` blocks (None: every call generates).
        self.answers: AnswerCache | None = AnswerCache()

    def fixed_weights(self) -> AbstractContextManager:
        """A block inside which the caller promises the models it answers with keep their weights: greedy
        ``interact`` calls there are answered from the session's answer cache when an identical call was
        made before with the same weights (``paradigms.answer_cache``). The runner wraps each evaluation."""
        return self.answers.fixed_weights() if self.answers is not None else nullcontext()

    # -- time -------------------------------------------------------------------------------
    @property
    def phase(self) -> int:
        """The drift phase the user's world is in: the stream's (by events consumed), or ``as_of``'s."""
        if self._pinned_phase is not None:
            return self._pinned_phase
        return phase_at(self.events, self.budget, self.suite.n_phases)

    @contextmanager
    def as_of(self, phase: int) -> Iterator[None]:
        """Inside the block, serve the user's world as it was in ``phase`` (profile, search tool).

        The evaluator answers phase j's drift items in phase j's world, so an accuracy on them
        does not depend on where the stream happens to be (a policy that does not change scores
        the same on them at every evaluation). Events and the stream position are untouched.
        """
        previous, self._pinned_phase = self._pinned_phase, phase
        try:
            yield
        finally:
            self._pinned_phase = previous

    @property
    def done(self) -> bool:
        return self.events >= self.budget

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.events)

    # -- the stream -------------------------------------------------------------------------
    def next_items(self, n: int) -> list[Item]:
        """The next ``n`` stream items in order, resolved for the current phase."""
        if self.done:
            raise BudgetExhausted
        n = min(n, len(self.stream) - self.position)
        rows = self.stream.select(range(self.position, self.position + n))
        self.position += n
        return [self.suite.resolve(row, self.user, self.phase, self.options.world) for row in rows]

    def resolve(self, row: dict) -> Item:
        """A stream or evaluation row as an item of the current phase, in the run's world."""
        return self.suite.resolve(row, self.user, self.phase, self.options.world)

    def tool(self) -> SearchTool | None:
        """The search tool over the user's current knowledge base, or None when search is off."""
        if not self.options.search:
            return None
        facts = self.user.profile(self.phase).fact_statements()
        return SearchTool.over(facts, self.protocol, self.options.search_results)

    # -- acting and scoring -----------------------------------------------------------------
    def interact(
        self,
        model,
        tokenizer,
        items: Sequence[Item],
        contexts: Sequence[Sequence[str]] | None = None,
        group_size: int = 1,
        settings: GenerationSettings | None = None,
        search: bool = True,
        decisions: Sequence[str | None] | None = None,
        sampler: Sampler | None = None,
    ) -> Interaction:
        """Answer ``items`` (each ``group_size`` times) through the one rollout and score them.

        ``settings`` defaults to the run's sampling settings (the evaluator passes greedy ones);
        ``search=False`` withholds the tool (the general probe); ``decisions[i]`` is a tool
        decision for item i taken outside the model (``paradigms.tool_policy``; None: the model's).
        Inside :meth:`fixed_weights`, a greedy call identical to an earlier one (same weights, prompts,
        notes, decisions, tool, settings) gets that call's episodes back without generating. ``sampler``
        draws the tokens instead of the model's ``generate`` (``paradigms.agent.rollout``; never cached).
        """
        repeated = [item for item in items for _ in range(group_size)]
        repeated_contexts = [c for c in contexts for _ in range(group_size)] if contexts else None
        repeated_decisions = [d for d in decisions for _ in range(group_size)] if decisions else None
        call = Call(repeated, repeated_contexts, search, repeated_decisions)
        return self.interact_together(model, tokenizer, [call], settings, sampler)[0]

    def interact_together(
        self,
        model,
        tokenizer,
        calls: Sequence[Call],
        settings: GenerationSettings | None = None,
        sampler: Sampler | None = None,
    ) -> list[Interaction]:
        """:meth:`interact` for several calls at once, in one batched rollout.

        Each call gets its own tool (its ``phase``'s world, or the current one) and is scored in its
        phase; calls with equal prompts, notes, decisions and tool share one set of rows (each gets a
        copy); the distinct calls' rows are one rollout side by side (the evaluator's parts: one
        ``generate`` per round instead of one per part). A row's tokens are those it gets in a call of
        its own up to floating-point rounding, which depends on the batch's shape (CPU matrix products
        round differently by shape) and can change a greedy token only where the two best logits tie
        to within it. So the answer cache keeps the request whole (``AnswerCache.key`` of every call):
        it is served only when the same calls come again, and a served answer is what this batch
        computes.
        """
        settings = settings or self.generation
        tools = []
        for call in calls:
            if call.contexts is not None and len(call.contexts) != len(call.items):
                raise ValueError(f"a call has {len(call.items)} items but {len(call.contexts)} contexts")
            if call.decisions is not None and len(call.decisions) != len(call.items):
                raise ValueError(f"a call has {len(call.items)} items but {len(call.decisions)} decisions")
            with self._in_phase(call.phase):
                tools.append(self.tool() if call.search else None)
        identities = [
            call_identity([i.query for i in call.items], call.contexts, call.decisions, tool)
            for call, tool in zip(calls, tools, strict=True)
        ]
        first: dict[Hashable, int] = {}  # each distinct call's first position
        for j, identity in enumerate(identities):
            first.setdefault(identity, j)
        distinct = list(first.values())
        key = None
        if self.answers is not None and sampler is None:
            key = self.answers.key(
                model, tokenizer, settings, self.protocol.name, [identities[j] for j in distinct]
            )
        episodes = self.answers.get(key) if key is not None else None
        if episodes is None:
            queries, row_tools, row_contexts, row_decisions = [], [], [], []
            for j in distinct:
                call, n = calls[j], len(calls[j].items)
                queries += [i.query for i in call.items]
                row_tools += [tools[j]] * n
                row_contexts += list(call.contexts) if call.contexts else [()] * n
                row_decisions += list(call.decisions) if call.decisions else [None] * n
            episodes = self._rollout(
                model, tokenizer, queries, row_tools, settings, row_contexts, row_decisions, sampler
            )
            if key is not None:
                self.answers.put(key, episodes)
        rows, start = {}, 0
        for j in distinct:
            rows[j] = episodes[start : start + len(calls[j].items)]
            start += len(calls[j].items)
        known = [
            rows[j] if first[identity] == j else copy.deepcopy(rows[first[identity]])
            for j, identity in enumerate(identities)
        ]
        interactions = []
        for call, episodes in zip(calls, known, strict=True):
            with self._in_phase(call.phase):
                interactions.append(self.score(call.items, episodes))
        return interactions

    def _in_phase(self, phase: int | None) -> AbstractContextManager:
        return self.as_of(phase) if phase is not None else nullcontext()

    def _rollout(
        self, model, tokenizer, queries, tools, settings, contexts, decisions, sampler
    ) -> list[Episode]:
        """The one rollout, timed (``generation_seconds``); a NaN or infinite probability is ``Diverged``."""
        started = time.perf_counter()
        try:
            return rollout(
                model,
                tokenizer,
                queries,
                tools,
                settings,
                contexts if any(contexts) else None,
                decisions if any(decisions) else None,
                self.protocol,
                sampler=sampler,
            )
        except RuntimeError as error:
            if "inf" not in str(error) and "nan" not in str(error):
                raise
            raise Diverged(
                f"the policy's next-token probabilities became NaN or infinite after {self.events} feedback "
                f"events; lower algorithm.learning_rate"
            ) from error
        finally:
            self.generation_seconds += time.perf_counter() - started

    def score(self, items: Sequence[Item], episodes: Sequence[Episode]) -> Interaction:
        """Rewards, components and the user's corrections for already generated episodes."""
        components, total = rewards.score(
            [e.prompt for e in episodes],
            [e.completion for e in episodes],
            self.weights,
            **item_columns(items, self.protocol),
        )
        corrections: list[Statement | None] = []
        for item, episode in zip(items, episodes, strict=True):
            if self.options.feedback == "text":
                parsed = self.protocol.parse_answer(episode.completion, item.candidates)
                corrections.append(
                    self.suite.correction(item, parsed.value, parsed.format, self.user, self.phase)
                )
            else:
                corrections.append(None)
        texts = [correction_words(item, c, self.protocol) for item, c in zip(items, corrections, strict=True)]
        return Interaction(list(items), list(episodes), total, components, corrections, self.phase, texts)

    def record(self, interaction: Interaction, train_metrics: Mapping[str, float] | None = None) -> None:
        """Count the batch's feedback events and hand it to the runner's callback."""
        self.events += interaction.feedback_events
        self.on_feedback(FeedbackReport(self.events, interaction, dict(train_metrics or {})))


def correction_words(item: Item, statement: Statement | None, protocol: Protocol) -> str | None:
    """The user's correction as text: their own words for a wrong value when the item has them (a user
    log's), else the protocol's wording; None when there is nothing to correct."""
    if statement is None:
        return None
    if item.correction_text is not None and statement.subject != FORMAT_SUBJECT:
        return item.correction_text
    return protocol.correction(statement)


def item_columns(items: Sequence[Item], protocol: Protocol | None = None) -> dict[str, list]:
    """The per-completion answer-key columns the reward functions take (``tasks.rewards``)."""
    name = (protocol or PROTOCOLS["grammar"]).name
    return {
        "gold": [i.gold for i in items],
        "wanted_format": [i.wanted_format for i in items],
        "item": [i.item for i in items],
        "needs_search": [i.needs_search for i in items],
        "candidates": [list(i.candidates) for i in items],
        "protocol": [name] * len(items),
    }
