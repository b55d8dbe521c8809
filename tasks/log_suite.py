"""The ``jsonl`` suite: a researcher's own user logs (``task.path``) as the task, one user per seed.

``seed`` k is the k-th user of the file (``tasks.user_logs``). Each user's lines are sorted by time
and split: the latest ``task.holdout`` are held out, the rest are the learning stream, served in
time order (from the start again when a run's budget asks for more lines than the user has). Held-
out lines without an explicit format request are the personal evaluation (``eval/personal_accuracy``);
those with one measure instruction following. The general probe is the backbone's, as for every
suite.

A log fixes each line's answer: an item is served with its own line's answer, format and
candidates, and the user's correction is that answer (in the user's own words when the line has
them; none on a line the user only rated). The user's profile, which the search tool (its facts)
and the ``oracle`` control (facts and format preferences) read, is each key's value on the user's
latest line about it. There are no drift phases: a user whose answers change over time is served
each line's answer, while search and the oracle see the latest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks import grammar
from tasks.items import Item, Query
from tasks.protocols.base import FORMAT_SUBJECT, USER_SUBJECT, Statement
from tasks.settings import TaskSettings
from tasks.suites import SUITES, Suite
from tasks.user_logs import LogError, LogRecord, UserLog, read_log
from tasks.users import Profile, User
from tasks.world import USER_ATTRIBUTES
from tasks.worlds import WorldView

if TYPE_CHECKING:  # imported where a dataset is built: validating a config never loads datasets
    from datasets import Dataset


def _log(options: TaskSettings) -> UserLog:
    if options.path is None:
        raise LogError("task.path: the jsonl suite reads a user-log file; set task.path=FILE")
    return read_log(options.path)


def _row(log: UserLog, record: LogRecord, search: bool, position: int | None = None) -> dict:
    """A stream or evaluation row carrying the line's whole answer key."""
    row = {
        "question": grammar.question(record.subject, record.attribute),
        "item": record.key,
        "search_enabled": search,
        "instruction": record.instruction,
        "text": record.question or "",
        "answer": record.answer,
        "format": record.format,
        "candidates": list(log.candidates(record)),
        "correction_text": record.correction,
        "corrects": record.corrects,
        "line": record.line,
    }
    return row if position is None else {"position": position, **row}


@dataclass(frozen=True)
class LogSuite(Suite):
    """Users, streams and evaluation items read from a user-log file instead of simulated."""

    def user(self, seed: int, options: TaskSettings | None = None) -> User:
        """The ``seed``-th user of the log, with one phase: each key's value on its latest line."""
        log = _log(options or TaskSettings())
        records = log.records[log.user_at(seed)]
        facts: dict[str, str] = {}
        formats: dict[str, str] = {}
        for record in records:  # in time order: later lines win
            if record.subject == USER_SUBJECT:
                facts[record.attribute] = record.answer
            elif record.format is not None:
                formats[record.attribute] = record.format
        kinds = (options or TaskSettings()).world.kind_names
        facts = {a: facts[a] for a in sorted(facts, key=lambda a: list(USER_ATTRIBUTES).index(a))}
        formats = {
            k: formats[k] for k in sorted(formats, key=lambda k: (k not in kinds, _index(kinds, k), k))
        }
        keys = tuple(f"fact:{a}" for a in facts) + tuple(f"format:{k}" for k in formats)
        return User(seed=seed, phases=(Profile(facts, formats),), changed_in=(keys,))

    def stream(self, seed: int, length: int, options: TaskSettings) -> Dataset:
        """``length`` rows: the user's learning lines in time order, repeated from the start as needed."""
        from datasets import Dataset

        log = _log(options)
        learning, _ = log.split(seed, options.holdout)
        rows = [_row(log, learning[p % len(learning)], options.search, p) for p in range(length)]
        return Dataset.from_list(rows)

    def personal_eval(self, seed: int, options: TaskSettings) -> Dataset:
        """The user's held-out lines without an explicit format request, in time order."""
        from datasets import Dataset

        log = _log(options)
        _, held_out = log.split(seed, options.holdout)
        rows = [_row(log, r, options.search) for r in held_out if r.instruction is None]
        if not rows:
            raise LogError(
                f"task.holdout: user {log.user_at(seed)!r} of {log.path} has no held-out line without an "
                "instruction, so nothing measures what the agent learned; raise task.holdout"
            )
        return Dataset.from_list(rows)

    def instruction_eval(self, seed: int, options: TaskSettings, user: User) -> list[Item]:
        """The user's held-out lines with an explicit format request (scored on the format)."""
        log = _log(options)
        _, held_out = log.split(seed, options.holdout)
        return [
            self.resolve(_row(log, r, options.search), user, 0, options.world)
            for r in held_out
            if r.instruction is not None
        ]

    def phase_eval(self, user: User, options: TaskSettings) -> list[list[Item]]:
        return []  # no drift phases

    def updated_eval(self, user: User, options: TaskSettings, phase: int) -> list[Item]:
        return []  # no drift phases

    def resolve(self, row: dict, user: User, phase: int, world: WorldView | None = None) -> Item:
        """The item a row asks, with its own line's answer key."""
        kind, *rest = row["item"].split(":", 2)
        subject, attribute = (USER_SUBJECT, rest[0]) if kind == "fact" else (rest[0], rest[1])
        return Item(
            query=Query(
                row["question"],
                bool(row["search_enabled"]),
                row["instruction"],
                subject,
                attribute,
                0,
                row["text"] or "",
            ),
            item=row["item"],
            gold=row["answer"],
            wanted_format=row["instruction"] or row["format"],
            needs_search=kind == "fact",
            phase=0,
            kind="personal" if kind == "fact" else "preference",
            candidates=tuple(row["candidates"]),
            correction_text=row["correction_text"],
            corrects=bool(row["corrects"]),
        )

    def correction(
        self, item: Item, parsed_value: str | None, parsed_format: str | None, user: User, phase: int
    ) -> Statement | None:
        """The line's answer when the value is wrong, else its wanted format when that was missed and not
        requested explicitly; None when right, or when the user only rates this line."""
        if not item.corrects:
            return None
        if parsed_value != item.gold:
            return Statement(item.query.subject, item.query.attribute, item.gold)
        if item.query.instruction is None and item.wanted_format and parsed_format != item.wanted_format:
            return Statement(FORMAT_SUBJECT, item.query.attribute, item.wanted_format)
        return None


def _index(kinds: tuple[str, ...], kind: str) -> int:
    return kinds.index(kind) if kind in kinds else 0


JSONL = LogSuite(
    "jsonl", 0.5, 1, "a researcher's own user logs (task.path; docs/user-logs.md)", reads_file=True
)
SUITES.add(JSONL.name, JSONL)
