"""``frozen``: the control floor. The base answers as it is (search allowed) and never learns."""

from __future__ import annotations

from typing import Literal

from paradigms.base import PARADIGMS, Paradigm, ParadigmSettings
from paradigms.session import Session


class FrozenSettings(ParadigmSettings):
    name: Literal["frozen"] = "frozen"


def answer_stream(paradigm: Paradigm, session: Session) -> None:
    """Answer the stream batch by batch with the paradigm's context and learn nothing."""
    while not session.done:
        items = session.next_items(min(session.batch_size, session.remaining))
        interaction = session.interact(paradigm.model, paradigm.tokenizer, items, paradigm.context_for(items))
        session.record(interaction)


@PARADIGMS.register("frozen")
class Frozen(Paradigm):
    Settings = FrozenSettings

    def train(self, session: Session) -> None:
        answer_stream(self, session)
