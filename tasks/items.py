"""What a task hands the agent (a ``Query``) and what it keeps to score the answer (an ``Item``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_GRAMMAR_QUESTION = re.compile(r"^ask (.+) (\S+) \?$")


@dataclass(frozen=True)
class Query:
    """One question put to the agent, exactly as every paradigm receives it.

    ``question`` is the question in the harness's grammar (``ask my dog ?``), which is also its
    canonical key; ``subject`` (``my`` for the user, else a world entity) and ``attribute`` are the
    same question as structured data, which a protocol renders in its own language. They are parsed
    from ``question`` when not given. ``variant`` picks a paraphrase where a protocol has several
    (the chat protocol's personal questions); the grammar has one wording. ``text`` is the question
    in a user's own words (a user log's ``question``; empty: the protocol words it), which a
    natural-language protocol asks verbatim.
    """

    question: str
    search_enabled: bool
    instruction: str | None = None
    subject: str = ""
    attribute: str = ""
    variant: int = 0
    text: str = ""

    def __post_init__(self) -> None:
        if not self.subject or not self.attribute:
            match = _GRAMMAR_QUESTION.match(" ".join(self.question.split()))
            if match:
                object.__setattr__(self, "subject", self.subject or match.group(1))
                object.__setattr__(self, "attribute", self.attribute or match.group(2))


@dataclass(frozen=True)
class Item:
    """A query with its answer key.

    ``item`` names what is asked: ``fact:<attr>`` for a user's private fact, ``world:<entity>:<attr>``
    for a world fact. ``wanted_format`` is the format the user wants (an explicit instruction or
    a hidden preference); None means any well-formed answer complies. ``needs_search`` is True
    when the answer can only come from the user (a personal fact). ``phase`` is the drift phase
    whose value ``gold`` is. ``notes`` is context the task itself supplies (probes only).
    ``candidates`` are every plausible value of what is asked (the gold among them): a free-text
    answer that names another one besides the gold earns no credit. ``correction_text`` is the user's
    own wording of a correction of the value (a user log's; None: the protocol words it), and
    ``corrects`` False marks a user who only rates this item (rewards, never a correction).
    """

    query: Query
    item: str
    gold: str
    wanted_format: str | None
    needs_search: bool
    phase: int = 0
    kind: str = ""
    notes: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    correction_text: str | None = None
    corrects: bool = True
