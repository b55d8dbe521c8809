"""Simulated users written as user logs (``harness export-users``): the ``jsonl`` suite's example file.

A simulated user's run is written as the log it would leave: its learning stream (the suite's stream
for the run's budget, one line per row, ``time`` = position) followed by its held-out evaluation (the
suite's personal evaluation, then its instruction-following items). Run on that file with
``task.holdout`` = the held-out count this module returns, the ``jsonl`` suite serves the same
items, answer keys and corrections as the simulated suite at the same seed and budget, so every
metric is the same (``tests/test_user_logs.py`` checks it). Only suites without drift are exported:
a log fixes each line's answer, while a drift suite's answer moves with the learner's feedback
events (a GRPO group of 8 reaches the change sooner in the stream than ``memory`` does).
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.items import Item
from tasks.protocols import USER_SUBJECT, Protocol
from tasks.settings import TaskSettings
from tasks.suites import Suite
from tasks.users import User


class NotExportable(ValueError):
    """A suite that cannot be written as a log; the message says which field and what to choose."""


def _line(seed: int, time: int, item: Item, user: User, protocol: Protocol) -> dict:
    query = item.query
    preference = None if query.subject == USER_SUBJECT else user.profile(0).formats.get(query.attribute)
    return {
        "user": str(seed),
        "time": time,
        "subject": query.subject,
        "attribute": query.attribute,
        "question": protocol.question_text(query),
        "answer": item.gold,
        "format": preference,
        "instruction": query.instruction,
        "candidates": list(item.candidates),
    }


def simulated_user_log(
    suite: Suite, seed: int, length: int, options: TaskSettings, protocol: Protocol
) -> tuple[list[dict], int]:
    """One simulated user's log lines (schema dicts, ``tasks.user_logs``) and its held-out count.

    ``length`` is the run's budget in feedback events (the stream's length); ``protocol`` words the
    questions (the chat protocol's wording is read verbatim by a chat backbone).
    """
    if suite.reads_file:
        raise NotExportable("task.suite: jsonl already is a log; export a simulated suite")
    if suite.n_phases > 1:
        raise NotExportable(
            f"task.suite: {suite.name} has drift phases, which a log cannot replay (a line fixes its "
            "answer); "
            "export user_facts, preferences or search_or_answer"
        )
    user = suite.user(seed, options)
    stream = [suite.resolve(row, user, 0, options.world) for row in suite.stream(seed, length, options)]
    held_out = [suite.resolve(row, user, 0, options.world) for row in suite.personal_eval(seed, options)]
    held_out += suite.instruction_eval(seed, options, user)
    lines = [_line(seed, t, item, user, protocol) for t, item in enumerate([*stream, *held_out])]
    return lines, len(held_out)


def simulated_users_log(
    suite: Suite, seeds: Sequence[int], length: int, options: TaskSettings, protocol: Protocol
) -> tuple[list[dict], int]:
    """Every seed's lines, users in seed order (user k is seed ``seeds[k]``), and the held-out count."""
    lines, counts = [], set()
    for seed in seeds:
        user_lines, held_out = simulated_user_log(suite, seed, length, options, protocol)
        lines += user_lines
        counts.add(held_out)
    if len(counts) != 1:  # every simulated suite holds out the same number of items per user
        raise NotExportable(
            f"users hold out different numbers of items ({sorted(counts)}); export them apart"
        )
    return lines, counts.pop()
