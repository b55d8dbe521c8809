"""Task families: named generators of an ordered interaction stream and its evaluation sets.

A suite turns a seed into the same user, the same ordered stream of questions and the same
evaluation items for every paradigm. Stream rows are phase-independent (the question and what
it asks); the answer key is resolved at serving time from the user's profile in the drift
phase then in force (``resolve``), because phases are measured in feedback events.

Families:

- ``user_facts``: questions about the user's private facts (the search tool can look them up).
- ``preferences``: world questions the base can answer, wanted in the user's hidden format.
- ``search_or_answer``: a mix of world questions (searching is waste) and personal ones.
- ``drift``: the mix, with facts and preferences changing over three phases.
- ``default``: the mix with two phases: the suite the comparison runs on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks import grammar
from tasks.items import Item, Query
from tasks.protocols import FORMATS, USER_SUBJECT, Statement
from tasks.registry import Registry
from tasks.settings import TaskSettings
from tasks.users import Profile, User, make_user
from tasks.world import USER_ATTRIBUTES
from tasks.worlds import WorldView, builtin_world

if TYPE_CHECKING:  # imported where a dataset is built: validating a config never loads datasets (~2 s)
    from datasets import Dataset

#: The longest stream a suite builds. A stream is materialized before its first event, at about 650
#: bytes per event while it is built (measured: 1e6 events take 0.6 GB and 5 s), so a budget of
#: 1e12 would exhaust any machine instead of running; at this length the stream costs ~1 GB.
MAX_STREAM_LENGTH = 1_000_000
#: Wordings a personal fact is asked in by the personal evaluation (the chat protocol's paraphrases).
FACT_VARIANTS = 5


@dataclass(frozen=True)
class Suite:
    """A task family: its mix of personal and world questions and its number of drift phases."""

    name: str
    personal_share: float
    n_phases: int
    description: str
    #: Whether the suite reads a file (``task.path``) rather than simulating its users.
    reads_file: bool = False

    # -- the user and the world split ---------------------------------------------------------
    def user(self, seed: int, options: TaskSettings | None = None) -> User:
        """The simulated user for ``seed`` (``options.shared_formats``: see ``make_user``); its format
        preferences are over the options' world's question kinds."""
        options = options or TaskSettings()
        return make_user(
            seed,
            n_phases=self.n_phases,
            shared_formats=options.shared_formats,
            kinds=options.world.kind_names,
        )

    # -- the stream ---------------------------------------------------------------------------
    def stream(self, seed: int, length: int, options: TaskSettings) -> Dataset:
        """``length`` stream rows in order, deterministic in ``seed`` (columns: see ``_row``)."""
        from datasets import Dataset

        if not 0 < length <= MAX_STREAM_LENGTH:
            raise ValueError(f"a stream has 1 to {MAX_STREAM_LENGTH} events, not {length}")
        rng = random.Random(f"stream-{self.name}-{seed}")
        rows = []
        for position in range(length):
            if rng.random() < self.personal_share:
                row = _row(USER_SUBJECT, rng.choice(list(USER_ATTRIBUTES)), options.search)
            else:
                row = _row(*options.world.draw_stream_question(rng), options.search)
            rows.append({"position": position, **row})
        return Dataset.from_list(rows)

    # -- evaluation ---------------------------------------------------------------------------
    def personal_eval(self, seed: int, options: TaskSettings) -> Dataset:
        """Held-out personal evaluation rows: does the agent know this user?

        Personal facts are asked as the stream asks them, without a format request, in
        ``FACT_VARIANTS`` wordings (a protocol with paraphrases asks each; the grammar has one, so
        its answers repeat); preferences are asked on held-out entities (the stream never asks
        about them), so a learned preference must generalize across entities. Explicit format
        requests are the instruction-following evaluation's (``instruction_eval``).
        """
        from datasets import Dataset

        rows = []
        if self.personal_share > 0:
            for attribute in USER_ATTRIBUTES:
                for variant in range(FACT_VARIANTS):
                    rows.append(_row(USER_SUBJECT, attribute, options.search, variant=variant))
        if self.personal_share < 1:
            for entity, kind in self._eval_questions(seed, options):
                rows.append(_row(entity, kind, options.search, variant=0))
        return Dataset.from_list(rows)

    def _eval_questions(self, seed: int, options: TaskSettings) -> list[tuple[str, str]]:
        return options.world.eval_questions(random.Random(f"eval-{self.name}-{seed}"))

    def instruction_eval(self, seed: int, options: TaskSettings, user: User) -> list[Item]:
        """Does the agent still follow an explicit format request on this suite's own questions?

        Personal facts with every format request; world questions of the preference kinds on the
        held-out entities with a format other than the user's habit for that kind (in phase 0), so a
        learned habit or a retrieved preference overriding the request shows. Scored on the format
        only (the ``format`` reward component).
        """
        world, items = options.world, []
        if self.personal_share > 0:
            for attribute in USER_ATTRIBUTES:
                for instruction in FORMATS:
                    items.append(
                        resolve(_row(USER_SUBJECT, attribute, options.search, instruction), user, 0, world)
                    )
        if self.personal_share < 1:
            habits = user.profile(0).formats
            for entity, kind in self._eval_questions(seed, options):
                others = [f for f in FORMATS if f != habits[kind]]
                request = others[len(entity) % len(others)]  # a fixed pick that varies across entities
                items.append(resolve(_row(entity, kind, options.search, request), user, 0, world))
        return items

    # -- serving ------------------------------------------------------------------------------
    def resolve(self, row: dict, user: User, phase: int, world: WorldView | None = None) -> Item:
        """A stream or evaluation row as the item served in drift phase ``phase`` (see ``resolve``)."""
        return resolve(row, user, phase, world)

    def correction(
        self, item: Item, parsed_value: str | None, parsed_format: str | None, user: User, phase: int
    ) -> Statement | None:
        """What the user corrects a response to ``item`` with (see ``correction``)."""
        return correction(item, parsed_value, parsed_format, user, phase)

    def phase_eval(self, user: User, options: TaskSettings) -> list[list[Item]]:
        """Per-phase items of the drift matrix: ``[i]`` asks the items whose value was set in phase i and
        that the user never changes later in the run, against that value.

        Every row of the matrix then scores the same items of phase i, each against a truth that still
        holds when it is asked, so an agent that answers with a value the user has since changed is
        never counted as forgetting the old one (the changed items are :meth:`updated_eval`'s).
        """
        last = len(user.changed_in) - 1
        return [
            [
                resolve(row, user, phase, options.world)
                for name in changed
                if user.phase_of(name, last) == phase
                for row in self._owned_rows(name, options)
            ]
            for phase, changed in enumerate(user.changed_in)
        ]

    def updated_eval(self, user: User, options: TaskSettings, phase: int) -> list[Item]:
        """The items the user has changed by ``phase`` (set after phase 0, still as set then), against
        their value in ``phase``: does the agent give the new value (``eval/updating_accuracy``)."""
        names = [
            name
            for changed_at in range(1, min(phase, len(user.changed_in) - 1) + 1)
            for name in user.changed_in[changed_at]
            if user.phase_of(name, phase) == changed_at
        ]
        return [
            resolve(row, user, phase, options.world)
            for name in names
            for row in self._owned_rows(name, options)
        ]

    def _owned_rows(self, name: str, options: TaskSettings) -> list[dict]:
        """The evaluation rows whose truth ``name`` (``fact:dog``, ``format:color``) sets, in this suite."""
        kind, key = name.split(":", 1)
        if kind == "fact" and self.personal_share > 0:
            return [_row(USER_SUBJECT, key, options.search)]
        if kind == "format" and self.personal_share < 1:
            return [_row(e, key, options.search) for e in options.world.phase_entities(key)]
        return []


def _row(
    subject: str, attribute: str, search: bool, instruction: str | None = None, variant: int | None = None
) -> dict:
    """One stream or evaluation row (``variant``: a personal question's wording, evaluation rows only)."""
    item = f"fact:{attribute}" if subject == USER_SUBJECT else f"world:{subject}:{attribute}"
    row = {
        "question": grammar.question(subject, attribute),
        "item": item,
        "search_enabled": search,
        "instruction": instruction,
    }
    if variant is not None:
        row["variant"] = variant
    return row


def resolve(row: dict, user: User, phase: int, world: WorldView | None = None) -> Item:
    """The answerable item for a stream or evaluation row, in drift phase ``phase``, in ``world``
    (default: the builtin world)."""
    world = world or builtin_world()
    profile: Profile = user.profile(phase)
    kind, *rest = row["item"].split(":", 2)
    instruction = row["instruction"]
    if kind == "fact":
        attribute = rest[0]
        subject = USER_SUBJECT
        gold, preference, needs_search, owner = profile.facts[attribute], None, True, f"fact:{attribute}"
        candidates = USER_ATTRIBUTES[attribute]
    else:
        subject, attribute = rest
        gold, preference, needs_search = world.value(subject, attribute), profile.formats[attribute], False
        owner = f"format:{attribute}"
        candidates = world.candidates(attribute)
    return Item(
        query=Query(
            row["question"],
            bool(row["search_enabled"]),
            instruction,
            subject,
            attribute,
            row.get("variant") or 0,
        ),
        item=row["item"],
        gold=gold,
        wanted_format=instruction or preference,
        needs_search=needs_search,
        phase=user.phase_of(owner, phase),
        kind="personal" if kind == "fact" else "preference",
        candidates=tuple(candidates),
    )


def correction(
    item: Item, parsed_value: str | None, parsed_format: str | None, user: User, phase: int
) -> Statement | None:
    """What the user corrects a response with, or None when there is nothing to correct.

    A wrong value is corrected first (the fact, or the world fact); otherwise a format that
    misses the user's hidden preference (explicit instructions are not corrected: they were
    stated). The run's protocol words it.
    """
    kind, *rest = item.item.split(":", 2)
    if parsed_value != item.gold:
        if kind == "fact":
            return user.correction(item.item, phase)
        return Statement(rest[0], rest[1], item.gold)
    if item.query.instruction is None and item.wanted_format and parsed_format != item.wanted_format:
        return user.correction(f"format:{rest[-1]}", phase)
    return None


SUITES: Registry[Suite] = Registry("task suite")
for _suite in (
    Suite("user_facts", 1.0, 1, "questions about the user's private facts"),
    Suite("preferences", 0.0, 1, "world questions wanted in the user's hidden format"),
    Suite("search_or_answer", 0.5, 1, "world questions (searching is waste) mixed with personal ones"),
    Suite("drift", 0.5, 3, "the mix, with facts and preferences changing over three phases"),
    Suite("default", 0.5, 2, "the mix with two drift phases: the comparison's suite"),
):
    SUITES.add(_suite.name, _suite)


def phase_at(events: int, budget: int, n_phases: int) -> int:
    """The drift phase in force after ``events`` feedback events of a ``budget``-event run."""
    return min(n_phases - 1, events * n_phases // max(1, budget))


# the user-log suite (``jsonl``) registers itself; it builds on this module, so it is imported last
from tasks import log_suite  # noqa: E402, F401
