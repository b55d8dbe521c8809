"""The ``Protocol`` contract: how a task's structured items become a model's text, and back.

A protocol is chosen by the backbone (``grammar`` for the builtin bases, ``chat`` for instruction-
tuned models with a chat template). Tasks, rewards, the rollout and the evaluator work on items and
parsed answers and call the protocol for every piece of text, so within a protocol every paradigm
shares one code path. Rendering methods take the backbone's tokenizer (duck-typed: ``__call__`` and,
for chat, ``apply_chat_template``); parsing methods are pure functions of text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.items import Query

#: The answer formats every protocol asks for and recognises.
FORMATS: tuple[str, ...] = ("plain", "json", "list", "sentence")
#: Subject of a user's private fact; ``format`` is the subject of a format preference.
USER_SUBJECT, FORMAT_SUBJECT = "my", "format"


@dataclass(frozen=True)
class ParsedAnswer:
    """What the final answer of a completion says.

    ``value`` is the one candidate value it names (None: none, or several); ``format`` the answer
    format recognised over the whole answer (None: none); ``well_formed`` whether a format was.
    """

    value: str | None
    format: str | None
    well_formed: bool


@dataclass(frozen=True)
class Statement:
    """A structured fact as notes, corrections and search results carry it.

    ``subject`` is ``my`` (a user's fact), ``format`` (a format preference: ``attribute`` is the
    question kind, ``value`` the format) or a world entity.
    """

    subject: str
    attribute: str
    value: str

    @property
    def key(self) -> str:
        """What the statement is about: ``fact:dog``, ``format:color`` or ``world:kalo:color``."""
        if self.subject == USER_SUBJECT:
            return f"fact:{self.attribute}"
        if self.subject == FORMAT_SUBJECT:
            return f"format:{self.attribute}"
        return f"world:{self.subject}:{self.attribute}"


class Protocol(ABC):
    """Turns items into text and text into tool calls and answers, for one family of backbones."""

    #: Registry name (``grammar``, ``chat``).
    name: str
    #: The world this protocol's backbones know (``tasks.worlds.WORLDS``).
    world: str
    #: The text a forced search call starts with (``paradigms.agent``'s tool decisions).
    tool_open: str
    #: Strings that end a generation round: a closed tool call, and for some protocols the answer.
    stops: tuple[str, ...]
    #: The stop string that closes a tool call (one of ``stops``).
    tool_close: str
    #: New tokens a reflection (lesson) may take.
    lesson_max_new_tokens: int = 8

    # -- prompts ------------------------------------------------------------------------------
    @abstractmethod
    def render_prompt(self, query: Query, notes: Sequence[str], tokenizer) -> str:
        """The whole prompt text the model continues: tool offer, notes, question, format request."""

    @abstractmethod
    def encode_prompt(self, text: str, tokenizer) -> list[int]:
        """Token ids of a rendered prompt (special tokens added or not, as the protocol renders)."""

    @abstractmethod
    def question_text(self, query: Query) -> str:
        """The question alone, as the protocol words it (what a memory store is searched with)."""

    # -- tool calls ---------------------------------------------------------------------------
    @abstractmethod
    def parse_tool_call(self, text: str) -> str:
        """The query of the last tool call in ``text`` (a generation round that ended on ``tool_close``);
        ``""`` when the call is malformed (it still counts as a call)."""

    @abstractmethod
    def tool_reply(self, lines: Sequence[str], tokenizer) -> str:
        """The environment's text spliced after a tool call (masked out of every loss)."""

    @abstractmethod
    def transcript(self, episode, tokenizer) -> str:
        """The completion as text to score: the agent's words and the tool's replies, in order.

        ``episode`` is a ``paradigms.agent.Episode`` (ids, env mask, tool results).
        """

    @abstractmethod
    def search_queries(self, completion: str) -> list[str]:
        """Every search query a transcript issued, in order."""

    # -- statements (notes, corrections, search results) -----------------------------------------
    @abstractmethod
    def note(self, statement: Statement) -> str:
        """A statement as a note placed in the prompt (the oracle's profile, a memory)."""

    @abstractmethod
    def result_line(self, statement: Statement) -> str:
        """A user's fact as a line of the search tool's knowledge base."""

    @abstractmethod
    def correction(self, statement: Statement) -> str:
        """The user's textual correction stating ``statement``."""

    @abstractmethod
    def note_statement(self, note: str) -> Statement | None:
        """What a note (or lesson) states, when it can be read; None otherwise."""

    @abstractmethod
    def search_words(self, text: str) -> set[str]:
        """Content words of a query or knowledge-base line (the search tool matches on them)."""

    # -- answers ------------------------------------------------------------------------------
    @abstractmethod
    def parse_answer(self, completion: str, candidates: Sequence[str] = ()) -> ParsedAnswer:
        """The final answer of a transcript: its value among ``candidates`` and its format."""

    @abstractmethod
    def fact_in_prompt(self, prompt: str, attribute: str, value: str) -> bool:
        """Whether a note in the prompt states the user's ``attribute`` as ``value``."""

    @abstractmethod
    def answer_text(self, value: str, fmt: str, query: Query, tokenizer=None) -> str:
        """A correct completion giving ``value`` in format ``fmt`` (what ``sft`` imitates), ending the
        turn the way the protocol ends it."""

    # -- reflection ---------------------------------------------------------------------------
    @abstractmethod
    def reflection_prompt(
        self, query: Query, said: ParsedAnswer, feedback: str | None, good: bool, tokenizer
    ) -> str:
        """The prompt asking the model for a one-line lesson; ``feedback`` is the user's correction
        text (None: only the reward, ``good`` or not)."""

    @abstractmethod
    def parse_lesson(self, text: str) -> str | None:
        """The lesson in a reflection's output, as a note; None when there is none or it is unreadable."""
