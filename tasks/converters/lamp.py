"""LaMP's published format as user logs (``harness convert-lamp``), for its classification tasks.

LaMP (Salemi et al., 2023, "LaMP: When Large Language Models Meet Personalization") publishes each
split of a task as two JSON files:

- ``<split>_questions.json``: a list of ``{"id": ..., "input": ..., "profile": [...]}``, one entry per
  user: the user's query (``input``, a natural-language instruction with the item) and the user's
  profile, their own earlier items (each with an ``id``, the task's fields and, in the time-based
  split, a ``date``);
- ``<split>_outputs.json``: ``{"task": "LaMP_2", "golds": [{"id": ..., "output": ...}]}``, the
  reference output per query id.

Two tasks carry the user's own label on every profile item, so each profile item is a question the
user answered, which the harness can learn from:

- ``LaMP_2`` (personalized movie tagging): profile items ``{"id", "description", "tag"}``; the answer
  is one of 15 tags;
- ``LaMP_3`` (personalized product rating): profile items ``{"id", "text", "score"}``; the answer is a
  score from 1 to 5.

Each user becomes one log user: the profile items in time order (``date`` when every item has
one, else the profile's order), each asked in LaMP's own query wording with the item's text, then
the query itself (``input`` verbatim, answered by its gold output) as the latest line, so
``task.holdout: 1`` holds out exactly LaMP's query. The generation tasks (LaMP 4-7) and citation
identification (LaMP 1, whose profile items carry no label) have no answer a candidate list can
score, and are refused. Logs in natural language need a chat backbone (``backbone: smollm2``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

#: LaMP-2's tags, as its task definition lists them.
MOVIE_TAGS = (
    "sci-fi",
    "based on a book",
    "comedy",
    "action",
    "twist ending",
    "dystopia",
    "dark comedy",
    "classic",
    "psychology",
    "fantasy",
    "romance",
    "thought-provoking",
    "social commentary",
    "violence",
    "true story",
)
SCORES = ("1", "2", "3", "4", "5")


class LampFormatError(ValueError):
    """A file that does not follow LaMP's published format: the message names the entry and the field."""


@dataclass(frozen=True)
class LampTask:
    """How one LaMP task's profile items become questions."""

    name: str
    subject: str  # what a profile item is, e.g. "movie"
    attribute: str  # what is asked about it, e.g. "tag"
    text_field: str  # the profile item's text
    label_field: str  # the profile item's label (the user's own answer)
    labels: tuple[str, ...]
    question: str  # LaMP's query wording, with {text} for the item's text

    def ask(self, text: str) -> str:
        return self.question.format(labels=", ".join(self.labels), text=" ".join(text.split()))


TASKS = {
    "LaMP_2": LampTask(
        "LaMP_2",
        "movie",
        "tag",
        "description",
        "tag",
        MOVIE_TAGS,
        "Which tag does this movie relate to among the following tags? Just answer with the tag name "
        "without further explanation. tags: [{labels}] description: {text}",
    ),
    "LaMP_3": LampTask(
        "LaMP_3",
        "review",
        "score",
        "text",
        "score",
        SCORES,
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
        "or 5 without further explanation. review: {text}",
    ),
}


def _task(name: str) -> LampTask:
    key = str(name).replace("-", "_")
    if key not in TASKS:
        raise LampFormatError(
            f"task {name!r}: only LaMP's labelled-profile classification tasks convert ({', '.join(TASKS)}); "
            "LaMP_1's profile items carry no label and LaMP_4-7 are generation tasks"
        )
    return TASKS[key]


def _load(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LampFormatError(f"{what}: {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise LampFormatError(f"{what}: {path} is not JSON ({error.msg}, line {error.lineno})") from None


def _field(entry, field: str, where: str):
    if not isinstance(entry, dict) or field not in entry or entry[field] in (None, ""):
        raise LampFormatError(f"{where}: no {field!r}; LaMP's files give every entry one")
    return entry[field]


def _day(value, where: str) -> date:
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise LampFormatError(f"{where}.date: {value!r} is not a YYYY-MM-DD date") from None


def lamp_to_log(questions_path: Path, outputs_path: Path) -> list[dict]:
    """The user-log lines (``tasks.user_logs`` schema dicts) of a LaMP split. Raises ``LampFormatError``."""
    outputs = _load(outputs_path, "outputs")
    task = _task(_field(outputs, "task", "outputs"))
    golds = {
        str(_field(g, "id", f"outputs.golds[{i}]")): g
        for i, g in enumerate(_field(outputs, "golds", "outputs"))
    }
    questions = _load(questions_path, "questions")
    if not isinstance(questions, list):
        raise LampFormatError("questions: must be a list of {id, input, profile} entries")
    lines: list[dict] = []
    for index, entry in enumerate(questions):
        where = f"questions[{index}]"
        user = str(_field(entry, "id", where))
        profile = _field(entry, "profile", where)
        if not isinstance(profile, list):
            raise LampFormatError(f"{where}.profile: must be a list of the user's items")
        if user not in golds:
            raise LampFormatError(f"{where}: id {user!r} has no gold output in {outputs_path}")
        gold = str(_field(golds[user], "output", f"outputs gold {user}")).strip()
        dated = bool(profile) and all(isinstance(p, dict) and p.get("date") for p in profile)
        days = [_day(p["date"], f"{where}.profile[{k}]") for k, p in enumerate(profile)] if dated else []
        order = sorted(range(len(profile)), key=lambda k: (days[k], k)) if dated else range(len(profile))
        for position, k in enumerate(order):
            item, spot = profile[k], f"{where}.profile[{k}]"
            label = str(_field(item, task.label_field, spot)).strip()
            if label not in task.labels:
                raise LampFormatError(
                    f"{spot}.{task.label_field}: {label!r} is not one of {task.name}'s labels"
                )
            lines.append(
                {
                    "user": user,
                    "time": days[k].isoformat() if dated else position,
                    "subject": f"{task.subject} {_field(item, 'id', spot)}",
                    "attribute": task.attribute,
                    "question": task.ask(str(_field(item, task.text_field, spot))),
                    "answer": label,
                    "candidates": list(task.labels),
                }
            )
        if gold not in task.labels:
            raise LampFormatError(f"outputs gold {user}: {gold!r} is not one of {task.name}'s labels")
        lines.append(
            {
                "user": user,
                "time": (max(days) + timedelta(days=1)).isoformat() if dated else len(profile),
                "subject": f"{task.subject} query {user}",
                "attribute": task.attribute,
                "question": " ".join(str(_field(entry, "input", where)).split()),
                "answer": gold,
                "candidates": list(task.labels),
            }
        )
    return lines
