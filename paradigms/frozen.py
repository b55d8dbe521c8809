"""``frozen``: the control floor. The base answers as it is (search allowed) and never learns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paradigms.base import Paradigm
from paradigms.session import Session
from paradigms.settings import FrozenSettings


def answer_stream(paradigm: Paradigm, session: Session) -> None:
    """Answer the stream batch by batch with the paradigm's context; only a tool policy learns."""
    while not session.done:
        items = session.next_items(min(session.batch_size, session.remaining))
        interaction, metrics = paradigm.answer_batch(session, items, paradigm.context_for(items))
        session.record(interaction, metrics)


class Frozen(Paradigm):
    Settings = FrozenSettings
    #: its evaluation answers with the base and a tool policy's greedy decisions: it writes nothing
    evaluation_writes_no_state = True

    def train(self, session: Session) -> None:
        answer_stream(self, session)

    def evaluation_state(self) -> dict[str, Any]:
        """Its tool policy, which learns as the stream goes (None without one); the base does not change."""
        return {"tool_policy": self.tool_policy}

    def load_evaluation_state(self, state: dict[str, Any]) -> None:
        self.tool_policy = state["tool_policy"]

    def save(self, directory: Path) -> list[Path]:
        return self.save_tool_policy(directory)
