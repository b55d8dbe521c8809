"""What a task hands the agent (a ``Query``) and what it keeps to score the answer (an ``Item``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    """One question put to the agent, exactly as every paradigm receives it."""

    question: str
    search_enabled: bool
    instruction: str | None = None


@dataclass(frozen=True)
class Item:
    """A query with its answer key.

    ``item`` names what is asked: ``fact:<attr>`` for a user's private fact, ``world:<entity>:<attr>``
    for a world fact. ``wanted_format`` is the format the user wants (an explicit instruction or
    a hidden preference); None means any well-formed answer complies. ``needs_search`` is True
    when the answer can only come from the user (a personal fact). ``phase`` is the drift phase
    whose value ``gold`` is. ``notes`` is context the task itself supplies (probes only).
    """

    query: Query
    item: str
    gold: str
    wanted_format: str | None
    needs_search: bool
    phase: int = 0
    kind: str = ""
    notes: tuple[str, ...] = ()
