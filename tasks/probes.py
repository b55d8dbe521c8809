"""Fixed evaluation sets over the general world and generic users.

- ``general_probe``: held-out world questions, each with the format instruction the base never
  saw paired with that fact. Its accuracy is what forgetting is measured on.
- The base's competence probes (``context_reading_probe``, ``search_probe``,
  ``needless_search_probe``, ``format_following_probe``, ``format_note_probe``) measure the
  skills the paradigms rely on, on users the base has never seen.
"""

from __future__ import annotations

import random

from tasks import grammar
from tasks.corpus import held_out_instruction
from tasks.items import Item, Query
from tasks.world import USER_ATTRIBUTES, WORLD_ATTRIBUTES, build_world


def general_probe(n: int | None = None, seed: int = 0) -> list[Item]:
    """World questions with held-out instructions, ``tools none``; ``n`` items (default all)."""
    world = build_world()
    items = [
        Item(
            query=Query(
                grammar.question(e, a), search_enabled=False, instruction=held_out_instruction(world, e, a)
            ),
            item=f"world:{e}:{a}",
            gold=world.value(e, a),
            wanted_format=held_out_instruction(world, e, a),
            needs_search=False,
            kind="general",
        )
        for e in world.entities
        for a in WORLD_ATTRIBUTES
    ]
    if n is not None and n < len(items):
        items = random.Random(seed).sample(items, n)
    return items


def _random_user_facts(rng: random.Random) -> dict[str, str]:
    return {a: rng.choice(pool) for a, pool in USER_ATTRIBUTES.items()}


def _personal_probe(n: int, seed: int, in_context: bool, others: tuple[int, int], kind: str) -> list[Item]:
    """Personal questions with ``others`` (min, max) other facts of the same user in context, and
    the asked fact among them when ``in_context``; search is offered."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        facts = _random_user_facts(rng)
        attribute = rng.choice(list(facts))
        shown = rng.sample([a for a in facts if a != attribute], rng.randint(*others))
        if in_context:
            shown.append(attribute)
            rng.shuffle(shown)
        notes = tuple(grammar.note_line(grammar.USER_SUBJECT, a, facts[a]) for a in shown)
        query = Query(grammar.question(grammar.USER_SUBJECT, attribute), True)
        items.append(
            Item(query, f"fact:{attribute}", facts[attribute], None, not in_context, kind=kind, notes=notes)
        )
    return items


def context_reading_probe(n: int = 200, seed: int = 1) -> list[Item]:
    """A personal question whose fact sits among 2-4 other facts of the same user in context.

    Search is offered; reading correctly means answering the right value without searching.
    """
    return _personal_probe(n, seed, in_context=True, others=(2, 4), kind="reading")


def search_probe(n: int = 200, seed: int = 2) -> list[Item]:
    """A personal question whose fact is not in context (0-2 other facts are), search offered."""
    return _personal_probe(n, seed, in_context=False, others=(0, 2), kind="search")


def format_following_probe(n: int = 200, seed: int = 3) -> list[Item]:
    """World questions with a random explicit ``use <format>`` instruction."""
    rng = random.Random(seed)
    world = build_world()
    items = []
    for _ in range(n):
        entity, attribute = rng.choice(world.entities), rng.choice(list(WORLD_ATTRIBUTES))
        fmt = rng.choice(grammar.FORMATS)
        items.append(
            Item(
                Query(grammar.question(entity, attribute), rng.random() < 0.5, fmt),
                f"world:{entity}:{attribute}",
                world.value(entity, attribute),
                fmt,
                False,
                kind="format",
            )
        )
    return items


def _bare_world_questions(n: int, seed: int, search_enabled: bool, kind: str) -> list[Item]:
    """``n`` random world questions with no instruction, no note and any format wanted."""
    rng = random.Random(seed)
    world = build_world()
    items = []
    for _ in range(n):
        entity, attribute = rng.choice(world.entities), rng.choice(list(WORLD_ATTRIBUTES))
        items.append(
            Item(
                Query(grammar.question(entity, attribute), search_enabled),
                f"world:{entity}:{attribute}",
                world.value(entity, attribute),
                None,
                False,
                kind=kind,
            )
        )
    return items


def unprompted_format_probe(n: int = 200, seed: int = 4) -> list[Item]:
    """World questions with no instruction and no preference in context (room to learn)."""
    return _bare_world_questions(n, seed, search_enabled=False, kind="unprompted")


def needless_search_probe(n: int = 200, seed: int = 6) -> list[Item]:
    """World questions with the tool offered and nothing in context: searching is never needed."""
    return _bare_world_questions(n, seed, search_enabled=True, kind="needless_search")


def format_note_probe(n: int = 200, seed: int = 5) -> list[Item]:
    """World questions whose wanted format is a preference noted in context among 0-2 other notes.

    Other format notes (for other kinds) and user facts sit beside it, so following the right
    note takes matching the question's kind, as a retrieved memory or the oracle's profile asks.
    """
    rng = random.Random(seed)
    world = build_world()
    items = []
    for _ in range(n):
        entity, attribute = rng.choice(world.entities), rng.choice(list(WORLD_ATTRIBUTES))
        formats = {k: rng.choice(grammar.FORMATS) for k in WORLD_ATTRIBUTES}
        other_kinds = rng.sample([k for k in WORLD_ATTRIBUTES if k != attribute], rng.randint(0, 2))
        notes = [grammar.format_note(k, formats[k]) for k in [attribute, *other_kinds]]
        facts = _random_user_facts(rng)
        notes += [grammar.note_line(grammar.USER_SUBJECT, a, facts[a]) for a in rng.sample(list(facts), 2)]
        rng.shuffle(notes)
        items.append(
            Item(
                Query(grammar.question(entity, attribute), rng.random() < 0.5),
                f"world:{entity}:{attribute}",
                world.value(entity, attribute),
                formats[attribute],
                False,
                kind="format_note",
                notes=tuple(notes),
            )
        )
    return items
