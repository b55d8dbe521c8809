"""What a run's paradigm actually answered from its stream: the user questions, and their digest.

The budget counts feedback events (scored responses), so a GRPO group of 8 is 8 events for one user
question. ``ConsumedStream`` counts the user questions (stream rows) a paradigm has answered so far,
whatever its group size (``cost/user_questions``, the second x-axis of a learning curve), and keeps a
running digest of those questions in the order they were answered: two runs on the same suite and seed
that answered the same number of questions must have the same digest, whatever their paradigm.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from tasks.items import Item


class ConsumedStream:
    """A running count and digest of the stream rows answered, each row once (not once per group sample)."""

    def __init__(self, group_size: int = 1):
        if group_size < 1:
            raise ValueError(f"group_size must be at least 1, not {group_size}")
        #: Responses per user question (an algorithm's group size; 1 for a paradigm without one).
        self.group_size = group_size
        self.questions = 0
        self._hash = hashlib.sha256()
        #: ``(feedback events, user questions, digest)`` at each :meth:`mark`.
        self.marks: list[dict] = []

    def add(self, items: Sequence[Item]) -> None:
        """One recorded batch's answered items, in order, a group repeating its item ``group_size`` times."""
        for item in items[:: self.group_size]:
            row = [item.query.question, item.item, item.query.instruction, item.query.search_enabled]
            self._hash.update(json.dumps(row).encode("utf-8") + b"\n")
            self.questions += 1

    @property
    def digest(self) -> str:
        """sha256 (hex) of the questions answered so far, in order (of no question: the empty digest)."""
        return self._hash.copy().hexdigest()

    def mark(self, events: int) -> None:
        """Remember the count and digest at ``events`` feedback events (the runner marks every evaluation)."""
        self.marks.append({"events": events, "user_questions": self.questions, "digest": self.digest})

    def record(self) -> dict:
        """What the run logs as ``stream_consumed.json``."""
        return {"group_size": self.group_size, "evaluations": list(self.marks)}
