"""``oracle``: the control ceiling. The user's current profile is in every prompt.

``notes: profile`` (default) places the whole profile (every fact and format preference);
``notes: relevant`` only what the question is about (the asked fact, or the asked kind's format
preference): the ceiling for a backbone that reads one note reliably but a whole profile poorly
(SmolLM2-135M reads the right value from one note ~0.85 of the time, from eight ~0.4; see
``harness base info --backbone smollm2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paradigms.base import Paradigm
from paradigms.frozen import answer_stream
from paradigms.session import Session
from paradigms.settings import OracleSettings
from tasks.items import Item
from tasks.protocols import USER_SUBJECT, Statement


class Oracle(Paradigm):
    Settings = OracleSettings
    notes_in_prompt = True
    #: its evaluation answers with the base and the profile as notes: it writes nothing
    evaluation_writes_no_state = True

    def context_for(self, items: Sequence[Item]) -> list[list[str]]:
        """The profile in force now (facts and format preferences): whole, or the entry each item asks."""
        protocol = self.session.protocol
        statements = self.session.user.profile(self.session.phase).statements()
        if self.settings.notes == "profile":
            notes = [protocol.note(s) for s in statements]
            return [list(notes) for _ in items]
        return [[protocol.note(s) for s in statements if _about(s, item)] for item in items]

    def train(self, session: Session) -> None:
        answer_stream(self, session)

    def evaluation_state(self) -> dict[str, Any]:
        """Nothing of its own changes: the profile it reads is the session's, as of the session's clock."""
        return {}

    def load_evaluation_state(self, state: dict[str, Any]) -> None:
        return None  # (nothing to load)


def _about(statement: Statement, item: Item) -> bool:
    """Whether a profile entry is what ``item`` asks about: its fact, or its kind's format preference."""
    if item.query.subject == USER_SUBJECT:
        return statement.key == f"fact:{item.query.attribute}"
    return statement.key == f"format:{item.query.attribute}"
