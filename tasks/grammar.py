"""The text protocol every prompt, completion, tool call and lesson is written in.

One small grammar of whitespace-separated words that the builtin word-level tokenizer covers
completely and that a real chat model can also produce. Everything that builds or parses text
for the agent goes through this module, so every paradigm and the evaluator read and write the
same language.

Prompt (what the agent sees)::

    tools search note my dog rex . note format color json . use json ask my dog ?

    - ``tools search`` / ``tools none``: whether the search tool is offered;
    - ``note ...`` lines: context placed by a paradigm (memories, the oracle's profile);
    - ``use <format>``: an optional explicit format instruction;
    - ``ask <subject> <attribute> ?``: the question; subject ``my`` is the user, otherwise a
      world entity.

Completion (what the agent writes, with tool output spliced in by the environment)::

    <search> my dog </search> <result> my dog rex . </result> <answer> { answer : rex } </answer>

Answer formats (inside ``<answer> ... </answer>``): ``plain`` ``rex``; ``json`` ``{ answer : rex }``;
``list`` ``- rex``; ``sentence`` ``it is rex .``.

Reflection prompt (the memory paradigm's ``llm`` lesson writer)::

    reflect ask my dog ? said max correction my dog rex . lesson   ->   note my dog rex .
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FORMATS: tuple[str, ...] = ("plain", "json", "list", "sentence")

SEARCH_OPEN, SEARCH_CLOSE = "<search>", "</search>"
RESULT_OPEN, RESULT_CLOSE = "<result>", "</result>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
NO_RESULT = "nothing"
USER_SUBJECT = "my"
FORMAT_KEY = "format"

#: Words of the protocol itself (not of the world or the users).
PROTOCOL_WORDS: tuple[str, ...] = (
    SEARCH_OPEN,
    SEARCH_CLOSE,
    RESULT_OPEN,
    RESULT_CLOSE,
    ANSWER_OPEN,
    ANSWER_CLOSE,
    "tools",
    "search",
    "none",
    "note",
    "use",
    "ask",
    "?",
    ".",
    USER_SUBJECT,
    FORMAT_KEY,
    "{",
    "}",
    ":",
    "answer",
    "-",
    "it",
    "is",
    NO_RESULT,
    "reflect",
    "said",
    "correction",
    "reward",
    "good",
    "bad",
    "lesson",
    *FORMATS,
)


def render_answer(value: str, fmt: str) -> str:
    """The answer body (without tags) for ``value`` in format ``fmt`` (one of FORMATS)."""
    if fmt == "plain":
        return value
    if fmt == "json":
        return f"{{ answer : {value} }}"
    if fmt == "list":
        return f"- {value}"
    if fmt == "sentence":
        return f"it is {value} ."
    raise ValueError(f"unknown answer format {fmt!r}; known: {', '.join(FORMATS)}")


_FORMAT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("json", re.compile(r"^\{ answer : (\S+) \}$")),
    ("list", re.compile(r"^- (\S+)$")),
    ("sentence", re.compile(r"^it is (\S+) \.$")),
    ("plain", re.compile(r"^(\S+)$")),
)


@dataclass(frozen=True)
class ParsedAnswer:
    """What the final answer of a completion says: its value and format, or why it has none."""

    value: str | None
    format: str | None
    well_formed: bool


def normalize(text: str) -> str:
    """Collapse whitespace so texts from any tokenizer compare as word sequences."""
    return " ".join(text.split())


def parse_answer(completion: str) -> ParsedAnswer:
    """Parse the last ``<answer> ... </answer>`` of a completion.

    Returns ``well_formed=False`` (value and format None) when the completion has no closed
    answer or its body matches no format.
    """
    text = normalize(completion)
    end = text.rfind(ANSWER_CLOSE)
    start = text.rfind(ANSWER_OPEN, 0, end if end >= 0 else None)
    if start < 0 or end < 0 or end < start:
        return ParsedAnswer(None, None, False)
    body = text[start + len(ANSWER_OPEN) : end].strip()
    for fmt, pattern in _FORMAT_PATTERNS:
        match = pattern.match(body)
        if match and match.group(1) not in PROTOCOL_WORDS:
            return ParsedAnswer(match.group(1), fmt, True)
    return ParsedAnswer(None, None, False)


def search_queries(completion: str) -> list[str]:
    """Every ``<search> q </search>`` query the completion issued, in order."""
    return [normalize(q) for q in re.findall(r"<search>(.*?)</search>", normalize(completion))]


def fact_line(subject: str, attribute: str, value: str) -> str:
    """A fact as a context or search-result line: ``my dog rex .``."""
    return f"{subject} {attribute} {value} ."


def note_line(subject: str, attribute: str, value: str) -> str:
    """A fact as a note placed in the prompt: ``note my dog rex .``."""
    return f"note {fact_line(subject, attribute, value)}"


def format_note(kind: str, fmt: str) -> str:
    """A format preference as a note: ``note format color json .``."""
    return note_line(FORMAT_KEY, kind, fmt)


def question(subject: str, attribute: str) -> str:
    """The question words: ``ask my dog ?``."""
    return f"ask {subject} {attribute} ?"


def build_prompt(
    question_text: str,
    *,
    search_enabled: bool,
    notes: list[str] | tuple[str, ...] = (),
    instruction: str | None = None,
) -> str:
    """The whole prompt: tool flag, context notes, optional format instruction, question."""
    parts = ["tools search" if search_enabled else "tools none", *notes]
    if instruction is not None:
        parts.append(f"use {instruction}")
    parts.append(question_text)
    return " ".join(parts)


def search_call(query: str) -> str:
    return f"{SEARCH_OPEN} {query} {SEARCH_CLOSE}"


def search_result(lines: list[str]) -> str:
    """The tool's reply as spliced into the completion (env tokens, never trained on)."""
    body = " ".join(lines) if lines else NO_RESULT
    return f"{RESULT_OPEN} {body} {RESULT_CLOSE}"


def answer(value: str, fmt: str) -> str:
    return f"{ANSWER_OPEN} {render_answer(value, fmt)} {ANSWER_CLOSE}"


def reflection_prompt(question_text: str, response_answer: str, feedback: str) -> str:
    """The lesson-writing prompt; ``feedback`` is ``correction <line>`` or ``reward good|bad``."""
    return f"reflect {question_text} said {response_answer} {feedback} lesson"


def parse_lesson(text: str) -> str | None:
    """The first ``note s a v .`` line of a lesson completion, or None (``none`` or malformed)."""
    match = re.search(r"note (\S+) (\S+) (\S+) \.", normalize(text))
    if not match or any(
        w in PROTOCOL_WORDS and w not in (USER_SUBJECT, FORMAT_KEY, *FORMATS) for w in match.groups()
    ):
        return None
    return match.group(0)


def parse_note(line: str) -> tuple[str, str, str] | None:
    """``(subject, attribute, value)`` of a ``note s a v .`` line, else None."""
    match = re.fullmatch(r"note (\S+) (\S+) (\S+) \.", normalize(line))
    return (match.group(1), match.group(2), match.group(3)) if match else None
