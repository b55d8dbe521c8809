"""``frozen``: the control floor. The base answers as it is (search allowed) and never learns."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from paradigms.base import PARADIGMS, Paradigm, ParadigmSettings
from paradigms.session import Session
from paradigms.tool_policy import ToolPolicySettings


class FrozenSettings(ParadigmSettings):
    name: Literal["frozen"] = "frozen"
    tool_policy: ToolPolicySettings = Field(
        default_factory=ToolPolicySettings,
        description="Who decides when to search: the model (none) or a learned Q-learning policy.",
    )


def answer_stream(paradigm: Paradigm, session: Session) -> None:
    """Answer the stream batch by batch with the paradigm's context; only a tool policy learns."""
    while not session.done:
        items = session.next_items(min(session.batch_size, session.remaining))
        interaction, metrics = paradigm.answer_batch(session, items, paradigm.context_for(items))
        session.record(interaction, metrics)


@PARADIGMS.register("frozen")
class Frozen(Paradigm):
    Settings = FrozenSettings

    def train(self, session: Session) -> None:
        answer_stream(self, session)

    def save(self, directory: Path) -> list[Path]:
        return self.save_tool_policy(directory)
