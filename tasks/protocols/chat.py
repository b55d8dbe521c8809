"""The ``chat`` protocol: natural language through the backbone's own chat template.

Prompts are chat messages rendered with ``tokenizer.apply_chat_template``:

- a system message with the search tool's instructions (when the tool is offered) and the
  paradigm's notes (retrieved memories, the oracle's profile) between ``NOTES_HEADER`` and
  ``NOTES_FOOTER``; no system
  message at all when there is nothing to say, so the template's own default applies;
- a user message: the question in natural language, with a format request where the task has one.

**The search tool.** Where the chat template declares tools (``apply_chat_template(tools=...)``
renders differently with them), the tool is declared that way; otherwise (SmolLM2's template
ignores ``tools``) the system message carries ``TOOL_INSTRUCTIONS``, one documented text
convention. Either way a call is written in the Hermes style most tool-using chat models share:
``<tool_call>{"name": "search", "arguments": {"query": "..."}}</tool_call>`` (search is the only tool,
so a call is read by its ``query`` argument whatever name it gives). The rollout stops at
``</tool_call>``; the result goes back as a ``tool`` message rendered by the template (the end of
the assistant turn, the tool turn, the start of the next assistant turn), all masked out of every
loss.

**Scoring free text.** The transcript is the agent's text with each tool reply in
``<tool_response>...</tool_response>``. The final answer is the text after the last reply. Its
format is recognised over the *whole* answer (so an answer padded with several formats matches
none): ``json`` an object whose only key is ``answer``; ``list`` every line a bullet (``-``, ``*``
or ``•``); ``plain`` one line of at most three words, no verb ``is``; ``sentence`` exactly one
sentence of at least three words starting with a capital and ending with ``.`` or ``!``. Where no
format is wanted, any non-empty answer complies. Its value is the one candidate value it names
(case, accents and punctuation ignored, whole words only): an answer naming the gold and another
candidate names no value and earns no credit.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from functools import cache

from tasks.items import Query
from tasks.protocols.base import FORMAT_SUBJECT, USER_SUBJECT, ParsedAnswer, Protocol, Statement
from tasks.world import USER_ATTRIBUTES
from tasks.worlds import real_kinds

TOOL_NAME = "search"
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
NO_RESULT = "No results."
#: The notes section of the system message: a header, the notes, a closing instruction. SmolLM2-135M reads a
#: note right far more often when the header says whose facts they are and the section ends with what
#: to do with them (the oracle with the one relevant note, personal accuracy on ``user_facts``, seeds
#: 0-4: 0.88 / 0.80 / 0.80 / 0.92 / 0.84, against 0.68 / 0.72 / 0.76 / 0.72 / 0.60 under "Answer using
#: these notes about the user:" alone; without the closing line it answers about itself: "I'm a
#: marketing specialist" to "What is my job?").
NOTES_HEADER = "Facts about the user (the person asking):"
NOTES_FOOTER = "Answer the user's question with these facts."
#: The search tool as a JSON schema (for templates that declare tools).
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Search the user's personal records for a fact about the user.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look up, e.g. my dog"}},
            "required": ["query"],
        },
    },
}
#: The text convention declaring the tool where the chat template has no tools section.
TOOL_INSTRUCTIONS = (
    "You can search the user's personal records for facts about the user. To search, reply with only: "
    f'{TOOL_OPEN}{{"name": "{TOOL_NAME}", "arguments": {{"query": "..."}}}}{TOOL_CLOSE}'
)

#: How the user's private facts are asked (paraphrases; ``Query.variant`` picks one, the stream asks the
#: first), noted, corrected and answered in a sentence.
USER_QUESTIONS = {
    "dog": (
        "What is the name of my dog?",
        "What is my dog called?",
        "What's my dog's name?",
        "Do you remember my dog's name?",
        "Tell me the name of my dog.",
    ),
    "city": (
        "Which city do I live in?",
        "Where do I live?",
        "What city is my home?",
        "In which city do I live?",
        "Tell me the city I live in.",
    ),
    "job": (
        "What is my job?",
        "What do I do for a living?",
        "What is my profession?",
        "What work do I do?",
        "Tell me my job.",
    ),
    "drink": (
        "What is my favourite drink?",
        "What do I like to drink most?",
        "Which drink do I like best?",
        "What is my favorite beverage?",
        "Tell me my favourite drink.",
    ),
    "sport": (
        "Which sport do I play?",
        "What sport do I play?",
        "What is my sport?",
        "Which sport is mine?",
        "Tell me the sport I play.",
    ),
}
USER_NOTES = {
    "dog": "The user's dog is called {value}.",
    "city": "The user lives in {value}.",
    "job": "The user works as a {value}.",
    "drink": "The user's favourite drink is {value}.",
    "sport": "The user plays {value}.",
}
USER_CORRECTIONS = {
    "dog": "My dog is called {value}.",
    "city": "I live in {value}.",
    "job": "I work as a {value}.",
    "drink": "My favourite drink is {value}.",
    "sport": "I play {value}.",
}
USER_ANSWERS = {
    "dog": "Your dog is called {value}.",
    "city": "You live in {value}.",
    "job": "You work as a {value}.",
    "drink": "Your favourite drink is {value}.",
    "sport": "You play {value}.",
}
#: Words that say which private fact a note or a lesson is about.
USER_ATTRIBUTE_WORDS = {
    "dog": ("dog",),
    "city": ("city", "live", "lives", "living"),
    "job": ("job", "work", "works", "working"),
    "drink": ("drink", "drinks"),
    "sport": ("sport", "sports", "play", "plays"),
}
#: Values written with a capital (names of dogs and cities).
_CAPITALISED = ("dog", "city")

#: The format request added to a question, and how a note or a correction names the format.
FORMAT_REQUESTS = {
    "plain": "Answer with the bare value only.",
    "json": 'Answer as a JSON object with the key "answer".',
    "list": "Answer as a bulleted list, like this:\n- ...",
    "sentence": "Answer in one full sentence.",
}
FORMAT_PHRASES = {
    "plain": "the bare value only",
    "json": 'a JSON object with the key "answer"',
    "list": "a bulleted list",
    "sentence": "one full sentence",
}
#: Words that say which format a note or a lesson names.
FORMAT_WORDS = {
    "plain": ("bare", "value only", "one word"),
    "json": ("json",),
    "list": ("bulleted", "bullet", "list"),
    "sentence": ("sentence",),
}
_STOP_WORDS = frozenset(
    (
        "a",
        "an",
        "the",
        "is",
        "are",
        "am",
        "was",
        "my",
        "me",
        "i",
        "you",
        "your",
        "user",
        "users",
        "what",
        "which",
        "who",
        "where",
        "do",
        "does",
        "of",
        "in",
        "as",
        "to",
        "called",
        "name",
        "for",
        "about",
        "on",
        "at",
        "it",
        "its",
        "and",
        "or",
        "please",
        "tell",
        "search",
        "look",
        "up",
        "find",
    )
)
_BULLET = re.compile(r"^[-*•]\s+(.*\S)$")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+[\"'(]?[A-Z]")
_TOOL_CALL = re.compile(re.escape(TOOL_OPEN) + r"(.*?)" + re.escape(TOOL_CLOSE), re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def fold(text: str) -> str:
    """Lower case, accents removed, punctuation as spaces, whitespace collapsed (for matching)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    plain = re.sub(r"'s\b", "", plain)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain).split())


def named_values(text: str, candidates: Sequence[str]) -> list[str]:
    """The candidates ``text`` names as whole words (case, accents and punctuation ignored), in order."""
    folded = f" {fold(text)} "
    return [c for c in dict.fromkeys(candidates) if fold(c) and f" {fold(c)} " in folded]


def _display(attribute: str, value: str) -> str:
    return value.capitalize() if attribute in _CAPITALISED else value


def _kind_plural(kind: str) -> str:
    """The real world's kinds name themselves (``capitals``); others are ``<kind> questions``."""
    for known in real_kinds():
        if known.name == kind:
            return known.plural
    return f"{kind} questions"


def _kind_phrase(kind: str) -> str:
    """``chemical symbol`` for ``symbol``: the kind as a noun in a world statement."""
    plural = _kind_plural(kind)
    return plural[:-1] if plural.endswith("s") and not plural.endswith(" questions") else kind


def _mentions(folded: str, words: Sequence[str]) -> bool:
    return any(f" {fold(w)} " in f" {folded} " for w in words)


@cache
def _template_declares_tools(tokenizer) -> bool:
    messages = [{"role": "user", "content": "Hello"}]
    plain = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    try:
        with_tools = tokenizer.apply_chat_template(
            messages, tools=[SEARCH_TOOL], tokenize=False, add_generation_prompt=True
        )
    except Exception:  # a template that cannot render tools does not declare them
        return False
    return with_tools != plain


@cache
def _tool_turn(tokenizer) -> tuple[str, str]:
    """The text the template puts before and after a tool message's content, after an assistant call."""
    marker, call = "\x00CONTENT\x00", "\x00CALL\x00"
    head = [{"role": "user", "content": "Hello"}]
    before = tokenizer.apply_chat_template(head, tokenize=False, add_generation_prompt=True) + call
    full = tokenizer.apply_chat_template(
        [*head, {"role": "assistant", "content": call}, {"role": "tool", "content": marker}],
        tokenize=False,
        add_generation_prompt=True,
    )
    if not full.startswith(before) or marker not in full:
        raise ValueError(
            "the backbone's chat template does not render a tool message after an assistant turn; use a chat "
            "model whose template accepts role 'tool', or set task.search=false"
        )
    suffix = full[len(before) :]
    start, end = suffix.split(marker)
    return start, end


class ChatProtocol(Protocol):
    name = "chat"
    world = "real"
    tool_open = TOOL_OPEN
    stops = (TOOL_CLOSE,)
    tool_close = TOOL_CLOSE
    lesson_max_new_tokens = 32

    # -- prompts ------------------------------------------------------------------------------
    def system_message(self, query: Query, notes: Sequence[str], declares_tools: bool) -> str:
        """The system message (empty when there is nothing to say)."""
        parts = []
        if query.search_enabled and not declares_tools:
            parts.append(TOOL_INSTRUCTIONS)
        if notes:
            parts.append(f"{NOTES_HEADER} {' '.join(' '.join(n.split()) for n in notes)} {NOTES_FOOTER}")
        return "\n\n".join(parts)

    def user_message(self, query: Query) -> str:
        text = self.question_text(query)
        return f"{text} {FORMAT_REQUESTS[query.instruction]}" if query.instruction else text

    def render_prompt(self, query: Query, notes: Sequence[str], tokenizer) -> str:
        declares = query.search_enabled and _template_declares_tools(tokenizer)
        system = self.system_message(query, notes, declares)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": self.user_message(query)}
        ]
        kwargs = {"tools": [SEARCH_TOOL]} if declares else {}
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
        if query.search_enabled and TOOL_NAME not in text:
            raise ValueError("the chat template dropped the search tool's declaration from the prompt")
        return text

    def encode_prompt(self, text: str, tokenizer) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def question_text(self, query: Query) -> str:
        if query.text:  # the user's own words (a user log's question)
            return query.text
        if query.subject == USER_SUBJECT:
            wordings = USER_QUESTIONS[query.attribute]
            return wordings[query.variant % len(wordings)]
        for kind in real_kinds():
            if kind.name == query.attribute:
                return kind.ask(query.subject)
        return f"What is the {query.attribute} of {query.subject}?"

    # -- tool calls ---------------------------------------------------------------------------
    def parse_tool_call(self, text: str) -> str:
        calls = _TOOL_CALL.findall(text)
        if not calls:
            return ""
        try:
            call = json.loads(calls[-1].strip())
            query = call["arguments"][
                "query"
            ]  # the only tool: a call is read by its query, whatever its name
        except (ValueError, TypeError, KeyError, AttributeError):
            return ""
        return " ".join(str(query).split())

    def tool_reply(self, lines: Sequence[str], tokenizer) -> str:
        start, end = _tool_turn(tokenizer)
        return f"{start}{self.reply_content(lines)}{end}"

    @staticmethod
    def reply_content(lines: Sequence[str]) -> str:
        return "\n".join(lines) if lines else NO_RESULT

    def transcript(self, episode, tokenizer) -> str:
        pieces, run, agent, replies = [], [], True, iter(episode.tool_results)
        for token, mask in zip(episode.completion_ids, episode.env_mask, strict=True):
            if bool(mask) != agent and run:
                pieces.append(self._piece(run, agent, replies, tokenizer))
                run = []
            agent = bool(mask)
            run.append(token)
        if run:
            pieces.append(self._piece(run, agent, replies, tokenizer))
        return "".join(pieces).strip()

    def _piece(self, ids, agent: bool, replies, tokenizer) -> str:
        if agent:
            return tokenizer.decode(ids, skip_special_tokens=True)
        return f"\n{RESPONSE_OPEN}\n{self.reply_content(next(replies, []))}\n{RESPONSE_CLOSE}\n"

    def search_queries(self, completion: str) -> list[str]:
        return [self.parse_tool_call(match.group(0)) for match in _TOOL_CALL.finditer(completion)]

    # -- statements ---------------------------------------------------------------------------
    def note(self, statement: Statement) -> str:
        s = statement
        if s.subject == USER_SUBJECT:
            return USER_NOTES[s.attribute].format(value=_display(s.attribute, s.value))
        if s.subject == FORMAT_SUBJECT:
            return f"The user wants answers about {_kind_plural(s.attribute)} as {FORMAT_PHRASES[s.value]}."
        return f"The {_kind_phrase(s.attribute)} of {s.subject} is {s.value}."

    def result_line(self, statement: Statement) -> str:
        return self.note(statement)

    def correction(self, statement: Statement) -> str:
        s = statement
        if s.subject == USER_SUBJECT:
            return USER_CORRECTIONS[s.attribute].format(value=_display(s.attribute, s.value))
        if s.subject == FORMAT_SUBJECT:
            return f"Please answer questions about {_kind_plural(s.attribute)} as {FORMAT_PHRASES[s.value]}."
        return self.note(s)

    def note_statement(self, note: str) -> Statement | None:
        """Reads our own notes and a model's lessons alike, by their words.

        A format preference: a kind of question and exactly one format named. A user's fact: exactly
        one attribute's words and one value of its pool. A world fact: ``The <kind> of <entity> is
        <value>.`` (the form the protocol writes).
        """
        folded = fold(note)
        kinds = self._kinds_named(folded)
        formats = [f for f, words in FORMAT_WORDS.items() if _mentions(folded, words)]
        if len(kinds) == 1 and len(formats) == 1 and ("answer" in folded or "want" in folded):
            return Statement(FORMAT_SUBJECT, kinds[0], formats[0])
        world = re.fullmatch(r"The (.+?) of (.+?) is (.+?)\.", " ".join(note.split()))
        if world:
            for kind in self._kinds_named(fold(world.group(1))):
                return Statement(world.group(2), kind, world.group(3))
        found = [
            (attribute, values)
            for attribute, words in USER_ATTRIBUTE_WORDS.items()
            if _mentions(folded, words) and (values := named_values(note, USER_ATTRIBUTES[attribute]))
        ]
        if len(found) == 1 and len(found[0][1]) == 1:
            return Statement(USER_SUBJECT, found[0][0], found[0][1][0])
        return None

    @staticmethod
    def _kinds_named(folded: str) -> list[str]:
        return [k.name for k in real_kinds() if _mentions(folded, (k.name, k.plural))]

    def search_words(self, text: str) -> set[str]:
        words = set()
        for word in fold(text).split():
            if word in _STOP_WORDS:
                continue
            words.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
        return words

    # -- answers ------------------------------------------------------------------------------
    @staticmethod
    def final_answer(completion: str) -> str:
        """The text after the last tool reply, tool calls removed, stripped."""
        tail = completion.rsplit(RESPONSE_CLOSE, 1)[-1]
        return _TOOL_CALL.sub("", tail).strip()

    def recognise_format(self, answer: str) -> tuple[str | None, str]:
        """``(format, body)`` of a final answer: its format as a whole, and the text holding its value."""
        text = answer.strip()
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1).strip()
        if text.startswith("{") and text.endswith("}"):
            try:
                obj = json.loads(text)
            except ValueError:
                return None, text
            if (
                isinstance(obj, dict)
                and list(obj) == ["answer"]
                and isinstance(obj["answer"], (str, int, float))
            ):
                return "json", str(obj["answer"])
            return None, text
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines and all(_BULLET.match(line) for line in lines):
            return "list", "\n".join(_BULLET.match(line).group(1) for line in lines)
        if len(lines) != 1:
            return None, text
        line = lines[0]
        bare = line.strip("\"'`* ").rstrip(".").strip("\"'`* ")
        if bare and len(bare.split()) <= 3 and not re.search(r"[{}\[\]:]|\b(is|are|was)\b", bare, re.I):
            return "plain", bare
        if (
            len(line.split()) >= 3
            and (line[0].isupper() or line[0].isdigit() or line[0] in "\"'")
            and line[-1] in ".!"
            and not _SENTENCE_END.search(line[:-1])
        ):
            return "sentence", line
        return None, text

    def parse_answer(self, completion: str, candidates: Sequence[str] = ()) -> ParsedAnswer:
        """The final answer's value and format; ``well_formed`` when there is an answer at all.

        Free text needs no format to be an answer: where none is wanted, any answer complies (its
        value still has to be the one candidate it names); where one is wanted, the recognised
        format must be it.
        """
        answer = self.final_answer(completion)
        fmt, body = self.recognise_format(answer)
        named = named_values(body, candidates)
        return ParsedAnswer(named[0] if len(named) == 1 else None, fmt, bool(answer))

    def fact_in_prompt(self, prompt: str, attribute: str, value: str) -> bool:
        at = prompt.find(NOTES_HEADER)
        if at < 0:
            return False
        section = prompt[at + len(NOTES_HEADER) :].split("\n", 1)[0]
        sentences = re.split(r"(?<=[.!?])\s+", section.strip())
        return any(self.note_statement(s) == Statement(USER_SUBJECT, attribute, value) for s in sentences)

    def answer_text(self, value: str, fmt: str, query: Query, tokenizer=None) -> str:
        shown = _display(query.attribute, value) if query.subject == USER_SUBJECT else value
        if fmt == "plain":
            body = shown
        elif fmt == "json":
            body = json.dumps({"answer": shown})
        elif fmt == "list":
            body = f"- {shown}"
        elif query.subject == USER_SUBJECT:
            body = USER_ANSWERS[query.attribute].format(value=shown)
        else:
            body = f"The {_kind_phrase(query.attribute)} of {query.subject} is {shown}."
        end = getattr(tokenizer, "eos_token", None) or ""
        return body + end

    # -- reflection ---------------------------------------------------------------------------
    def reflection_prompt(
        self, query: Query, said: ParsedAnswer, feedback: str | None, good: bool, tokenizer
    ) -> str:
        """Asks the model to restate, about the user, what the interaction taught: the user's correction,
        or for a good answer what it got right (the fact said, or the format used where none was asked).

        A small chat model writes no usable lesson when asked to reflect on a whole exchange
        (SmolLM2-135M: 0 of 8 readable; it writes about itself), but restates a user's sentence about
        the user reliably (8 of 8), so the lesson is asked for that way.
        """
        taught = feedback or (self._success_statement(query, said) if good else None)
        text = taught or "That answer was wrong."
        request = (
            f'Rewrite this sentence about the user in the third person, starting with "The user": "{text}"'
        )
        messages = [{"role": "user", "content": request}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _success_statement(self, query: Query, said: ParsedAnswer) -> str | None:
        """What a right answer confirms, in the user's words (None when it confirms nothing to note)."""
        if query.subject == USER_SUBJECT and said.value:
            return self.correction(Statement(USER_SUBJECT, query.attribute, said.value))
        if query.subject != USER_SUBJECT and query.instruction is None and said.format:
            return self.correction(Statement(FORMAT_SUBJECT, query.attribute, said.format))
        return None

    def parse_lesson(self, text: str) -> str | None:
        first = re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0].strip()
        return first if first and self.note_statement(first) is not None else None
