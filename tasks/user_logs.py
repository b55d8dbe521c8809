"""A researcher's own user logs: the JSONL schema, its validation, and each user's split by time.

One JSON object per line, one line per interaction (the full schema, with examples, is in
``docs/user-logs.md``):

============  ========  ==================================================================================
field         required  meaning
============  ========  ==================================================================================
user          yes       the user's id (string or integer); each user is one run (``seed`` k: the k-th
                        user in order of first appearance)
time          yes       when it happened: a number (any unit) or an ISO 8601 date or date-time; orders
                        the user's lines (ties keep file order); one user uses one kind
subject       yes       who or what the question is about: ``my`` for the user's own fact, else the
                        entity asked about
attribute     yes       what is asked about the subject: a user fact (``dog``, ``city``, ``job``,
                        ``drink``, ``sport``) for subject ``my``, else any one-word kind (``color``,
                        ``tag``)
answer        yes       the reference answer
question      no        the question as the user worded it (a chat backbone reads it verbatim; the
                        builtin grammar always asks ``ask <subject> <attribute> ?``)
format        no        the answer format the user wants (``plain``, ``json``, ``list``, ``sentence``)
instruction   no        an explicit format request in the question (same names); held-out lines with one
                        measure instruction following, not what the agent learned
candidates    no        every plausible answer, ``answer`` among them (default: every answer the file
                        gives for this attribute); a free-text answer naming another one earns nothing
correction    no        the user's correction in their own words: what the agent is told, instead of the
                        protocol's wording, when its answer gets the value wrong
rating        no        the user's rating of the answer they got, in [0, 1]: a line with a rating and no
                        correction is a user who rates rather than corrects, so the agent gets the
                        rewards only, never a correction, on it (the rating itself scores nothing: the
                        agent's own answer is scored against ``answer``)
============  ========  ==================================================================================

Each user's lines are sorted by time; the latest ``holdout`` of them (a share in (0, 1), or a
count) are held out for evaluation and the rest are the learning stream. Validation stops at the
first bad line with ``LogError``, whose message names the line number and the field.
Pure Python; no model is touched here.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from tasks.protocols.base import FORMAT_SUBJECT, FORMATS, USER_SUBJECT
from tasks.world import USER_ATTRIBUTES, WORLD_ATTRIBUTES, build_world, vocabulary

REQUIRED = ("user", "time", "subject", "attribute", "answer")
OPTIONAL = ("question", "format", "instruction", "candidates", "correction", "rating")
FIELDS = REQUIRED + OPTIONAL
_ONE_WORD = re.compile(r"^[A-Za-z0-9_\-]+$")


class LogError(ValueError):
    """A bad user log: the message is one line naming the file, the line number, the field and the fix."""


@dataclass(frozen=True)
class LogRecord:
    """One validated line. ``when`` is the sortable time (seconds for dates); ``line`` is 1-based."""

    line: int
    user: str
    when: float
    subject: str
    attribute: str
    answer: str
    question: str | None = None
    format: str | None = None
    instruction: str | None = None
    candidates: tuple[str, ...] | None = None
    correction: str | None = None
    rating: float | None = None

    @property
    def key(self) -> str:
        """What the line asks: ``fact:dog`` or ``world:<subject>:<attribute>``."""
        if self.subject == USER_SUBJECT:
            return f"fact:{self.attribute}"
        return f"world:{self.subject}:{self.attribute}"

    @property
    def corrects(self) -> bool:
        """Whether the user corrects on this line (False: a rating and no correction: rewards only)."""
        return self.correction is not None or self.rating is None


@dataclass(frozen=True)
class UserLog:
    """A validated log file: ``users`` in order of first appearance, each user's records sorted by time."""

    path: str
    users: tuple[str, ...]
    records: dict[str, tuple[LogRecord, ...]]
    #: Default candidates per attribute: every answer the file gives for it, sorted.
    answers: dict[str, tuple[str, ...]]

    def user_at(self, seed: int) -> str:
        if not 0 <= seed < len(self.users):
            raise LogError(
                f"{self.path} has {len(self.users)} users, so seeds 0-{len(self.users) - 1}; got seed {seed}"
            )
        return self.users[seed]

    def candidates(self, record: LogRecord) -> tuple[str, ...]:
        return record.candidates if record.candidates is not None else self.answers[record.attribute]

    def split(self, seed: int, holdout: float) -> tuple[tuple[LogRecord, ...], tuple[LogRecord, ...]]:
        """The ``seed``-th user's (learning, held-out) records, each in time order."""
        user = self.user_at(seed)
        records = self.records[user]
        count = holdout_count(len(records), holdout)
        if count >= len(records):
            raise LogError(
                f"task.holdout: user {user!r} of {self.path} has {len(records)} lines and holding out "
                f"{count} "
                "leaves none to learn from; lower task.holdout"
            )
        return records[: len(records) - count], records[len(records) - count :]


def holdout_count(n: int, holdout: float) -> int:
    """How many of a user's ``n`` lines are held out: ``holdout`` itself when it is a whole count (>= 1),
    else that share of ``n`` rounded, at least one."""
    if holdout >= 1:
        return int(holdout)
    return max(1, round(holdout * n))


def read_log(path: str | Path) -> UserLog:
    """The validated log at ``path`` (cached while the file is unchanged). Raises ``LogError``."""
    file = Path(path)
    if not file.is_file():
        raise LogError(
            f"task.path: {path} does not exist; pass a JSONL file of user logs (docs/user-logs.md)"
        )
    stat = file.stat()
    return _read(str(file.resolve()), stat.st_mtime_ns, stat.st_size)


@cache
def _read(path: str, mtime_ns: int, size: int) -> UserLog:
    name = Path(path).name
    records: dict[str, list[LogRecord]] = {}
    time_kinds: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            record, kind = parse_line(text, number, name)
            if time_kinds.setdefault(record.user, kind) != kind:
                raise _error(
                    name,
                    number,
                    "time",
                    f"user {record.user!r} mixes numbers and dates",
                    "give one user's times all as numbers or all as ISO 8601 dates",
                )
            records.setdefault(record.user, []).append(record)
    if not records:
        raise LogError(f"task.path: {name} holds no line; write one JSON object per line (docs/user-logs.md)")
    answers: dict[str, set[str]] = {}
    for user_records in records.values():
        for record in user_records:
            answers.setdefault(record.attribute, set()).add(record.answer)
    return UserLog(
        path=name,
        users=tuple(records),
        records={u: tuple(sorted(rs, key=lambda r: (r.when, r.line))) for u, rs in records.items()},
        answers={attribute: tuple(sorted(values)) for attribute, values in answers.items()},
    )


def _error(file: str, line: int, field: str, problem: str, fix: str) -> LogError:
    return LogError(f"task.path: {file} line {line}, field {field!r}: {problem}; {fix}")


def parse_line(text: str, line: int, file: str = "log") -> tuple[LogRecord, str]:
    """One line as a record and the kind of its time (``number`` or ``date``). Raises ``LogError``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LogError(
            f"task.path: {file} line {line}: not valid JSON ({error.msg} at column {error.colno}); "
            "write one JSON object per line"
        ) from None
    if not isinstance(data, dict):
        raise LogError(f"task.path: {file} line {line}: not a JSON object; write one object per line")
    for field in data:
        if field not in FIELDS:
            close = difflib.get_close_matches(str(field), FIELDS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(FIELDS)}"
            raise _error(file, line, str(field), "unknown field", hint)
    for field in REQUIRED:
        if data.get(field) is None:
            raise _error(
                file, line, field, "missing", "every line needs user, time, subject, attribute, answer"
            )

    def text_field(field: str, optional: bool = False) -> str | None:
        value = data.get(field)
        if value is None and optional:
            return None
        if field == "user" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            raise _error(
                file, line, field, f"must be a non-empty string, got {json.dumps(value)}", "fix the value"
            )
        return " ".join(value.split())

    def format_field(field: str) -> str | None:
        value = data.get(field)
        if value is not None and value not in FORMATS:
            raise _error(
                file, line, field, f"unknown format {json.dumps(value)}", f"use one of {', '.join(FORMATS)}"
            )
        return value

    user, subject, attribute, answer = (text_field(f) for f in ("user", "subject", "attribute", "answer"))
    when, kind = _time(data["time"], file, line)
    if ":" in subject or subject == FORMAT_SUBJECT:
        raise _error(
            file, line, "subject", f"{subject!r} is reserved or holds ':'", "name the entity otherwise"
        )
    if not _ONE_WORD.match(attribute):
        raise _error(
            file, line, "attribute", f"{attribute!r} is not one word", "use letters, digits, '_' or '-' only"
        )
    if subject == USER_SUBJECT and attribute not in USER_ATTRIBUTES:
        raise _error(
            file,
            line,
            "attribute",
            f"the protocols word a user's own facts for {', '.join(USER_ATTRIBUTES)} only, not {attribute!r}",
            "use one of those, or set subject to what the question is about",
        )
    candidates = data.get("candidates")
    if candidates is not None:
        if (
            not isinstance(candidates, list)
            or not candidates
            or not all(isinstance(c, str) and c.strip() for c in candidates)
        ):
            raise _error(file, line, "candidates", "must be a non-empty list of strings", "fix the value")
        candidates = tuple(" ".join(c.split()) for c in candidates)
        if answer not in candidates:
            raise _error(file, line, "candidates", f"does not contain the answer {answer!r}", "add it")
    rating = data.get("rating")
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int | float) or not 0 <= rating <= 1:
            raise _error(
                file, line, "rating", f"must be a number in [0, 1], got {json.dumps(rating)}", "rescale it"
            )
        rating = float(rating)
    record = LogRecord(
        line=line,
        user=user,
        when=when,
        subject=subject,
        attribute=attribute,
        answer=answer,
        question=text_field("question", optional=True),
        format=format_field("format"),
        instruction=format_field("instruction"),
        candidates=candidates,
        correction=text_field("correction", optional=True),
        rating=rating,
    )
    return record, kind


def _time(value, file: str, line: int) -> tuple[float, str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _error(file, line, "time", f"must be finite, got {value}", "fix the value")
        return float(value), "number"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp(), "date"
    raise _error(
        file,
        line,
        "time",
        f"must be a number or an ISO 8601 date, got {json.dumps(value)}",
        'write e.g. 17 or "2024-05-01T09:30:00"',
    )


def grammar_problem(log: UserLog) -> str | None:
    """Why the builtin grammar cannot ask some line of ``log`` (the first one), or None when it can ask all.

    The builtin bases read only their own words: a user's fact from its pool, or a builtin world
    entity's ``color``, ``food`` or ``home``, and answers, candidates and corrections in their vocabulary.
    """
    words = set(vocabulary())
    entities = set(build_world().entities)
    for user in log.users:
        for record in log.records[user]:
            if record.subject == USER_SUBJECT:
                pool = USER_ATTRIBUTES[record.attribute]
            elif record.subject in entities and record.attribute in WORLD_ATTRIBUTES:
                pool = WORLD_ATTRIBUTES[record.attribute]
            else:
                field = "subject" if record.subject not in entities else "attribute"
                return _grammar_message(log, record, field, f"{record.subject} {record.attribute}")
            for field, values in (("answer", [record.answer]), ("candidates", record.candidates or ())):
                outside = [v for v in values if v not in pool]
                if outside:
                    return _grammar_message(log, record, field, outside[0])
            if record.correction is not None and not set(record.correction.split()) <= words:
                return _grammar_message(log, record, "correction", record.correction)
    return None


def _grammar_message(log: UserLog, record: LogRecord, field: str, what: str) -> str:
    return (
        f"task.path: {log.path} line {record.line}, field {field!r}: the builtin grammar cannot say "
        f"{what!r}; "
        "use a chat backbone (e.g. backbone: smollm2) for logs in natural language"
    )


def record_to_json(record: dict) -> str:
    """One line of a log file, fields in the schema's order, absent optional fields left out."""
    ordered = {field: record[field] for field in FIELDS if record.get(field) is not None}
    return json.dumps(ordered, ensure_ascii=False)


def write_log(records: Sequence[dict], path: str | Path) -> Path:
    """Write ``records`` (schema dicts) as a JSONL file, each validated first (raises ``LogError``)."""
    lines = [record_to_json(r) for r in records]
    for number, text in enumerate(lines, start=1):
        parse_line(text, number, Path(path).name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
