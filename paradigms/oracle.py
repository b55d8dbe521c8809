"""``oracle``: the control ceiling. The user's whole current profile is in every prompt."""

from __future__ import annotations

from collections.abc import Sequence

from paradigms.base import Paradigm
from paradigms.frozen import answer_stream
from paradigms.session import Session
from paradigms.settings import OracleSettings
from tasks.items import Item


class Oracle(Paradigm):
    Settings = OracleSettings

    def context_for(self, items: Sequence[Item]) -> list[list[str]]:
        """The profile in force now (facts and format preferences), for every item."""
        protocol = self.session.protocol
        notes = [protocol.note(s) for s in self.session.user.profile(self.session.phase).statements()]
        return [list(notes) for _ in items]

    def train(self, session: Session) -> None:
        answer_stream(self, session)
