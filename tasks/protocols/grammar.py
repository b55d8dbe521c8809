"""The ``grammar`` protocol: the builtin bases' private word-level language (``tasks.grammar``).

Every method delegates to ``tasks.grammar``, which is unchanged (its source is part of the builtin
base's cache key): prompts like ``tools search note my dog rex . ask my dog ?``, completions like
``<search> my dog </search> <result> my dog rex . </result> <answer> { answer : rex } </answer>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks import grammar
from tasks.items import Query
from tasks.protocols.base import ParsedAnswer, Protocol, Statement

_STOP_WORDS = frozenset({grammar.USER_SUBJECT, ".", "?", "ask"})


class GrammarProtocol(Protocol):
    name = "grammar"
    world = "builtin"
    tool_open = " " + grammar.SEARCH_OPEN
    stops = (grammar.SEARCH_CLOSE, grammar.ANSWER_CLOSE)
    tool_close = grammar.SEARCH_CLOSE
    lesson_max_new_tokens = 8

    def render_prompt(self, query: Query, notes: Sequence[str], tokenizer=None) -> str:
        return grammar.build_prompt(
            query.question,
            search_enabled=query.search_enabled,
            notes=list(notes),
            instruction=query.instruction,
        )

    def encode_prompt(self, text: str, tokenizer) -> list[int]:
        return tokenizer(text)["input_ids"]

    def question_text(self, query: Query) -> str:
        return query.question

    def parse_tool_call(self, text: str) -> str:
        queries = grammar.search_queries(text)
        return queries[-1] if queries else ""

    def tool_reply(self, lines: Sequence[str], tokenizer=None) -> str:
        return " " + grammar.search_result(list(lines))

    def transcript(self, episode, tokenizer) -> str:
        return tokenizer.decode(episode.completion_ids, skip_special_tokens=True)

    def search_queries(self, completion: str) -> list[str]:
        return grammar.search_queries(completion)

    def note(self, statement: Statement) -> str:
        return grammar.note_line(statement.subject, statement.attribute, statement.value)

    def result_line(self, statement: Statement) -> str:
        return grammar.fact_line(statement.subject, statement.attribute, statement.value)

    def correction(self, statement: Statement) -> str:
        return grammar.fact_line(statement.subject, statement.attribute, statement.value)

    def note_statement(self, note: str) -> Statement | None:
        parsed = grammar.parse_note(note)
        return Statement(*parsed) if parsed else None

    def search_words(self, text: str) -> set[str]:
        return set(grammar.normalize(text).split()) - _STOP_WORDS

    def parse_answer(self, completion: str, candidates: Sequence[str] = ()) -> ParsedAnswer:
        parsed = grammar.parse_answer(completion)
        return ParsedAnswer(parsed.value, parsed.format, parsed.well_formed)

    def fact_in_prompt(self, prompt: str, attribute: str, value: str) -> bool:
        return grammar.fact_line(grammar.USER_SUBJECT, attribute, value) in grammar.normalize(prompt)

    def answer_text(self, value: str, fmt: str, query: Query, tokenizer=None) -> str:
        return " " + grammar.answer(value, fmt)

    def reflection_prompt(
        self, query: Query, said: ParsedAnswer, feedback: str | None, good: bool, tokenizer=None
    ) -> str:
        said_text = grammar.render_answer(said.value, said.format) if said.well_formed else grammar.NO_RESULT
        signal = f"correction {feedback}" if feedback else f"reward {'good' if good else 'bad'}"
        return grammar.reflection_prompt(query.question, said_text, signal)

    def parse_lesson(self, text: str) -> str | None:
        return grammar.parse_lesson(text)
