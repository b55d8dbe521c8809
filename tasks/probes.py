"""Fixed evaluation sets over the general world and generic users, for any protocol and world.

- ``general_probe``: world questions with a format instruction, scored on value and format
  (``eval/general_accuracy``). Builtin world: every fact, each with the instruction the base never
  saw paired with it. Real world: the probe facts (never in a stream), each asked in every format;
  the evaluator keeps only the questions the untouched backbone answers right (``keep``), so general
  accuracy starts at 1.0 (a drop is from knowledge and format skill the model had).
- ``knowledge_probe``: world facts no stream asks about, asked plainly and scored on the value alone:
  world knowledge apart from any format habit (``eval/general_knowledge``, knowledge forgetting).
- The competence probes (``context_reading_probe``, ``search_probe``, ``needless_search_probe``,
  ``format_following_probe``, ``format_note_probe``, ``unprompted_format_probe``) measure the skills
  the paradigms rely on, on users the backbone has never seen; their notes are written in the
  protocol's words.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from tasks import grammar
from tasks.corpus import held_out_instruction
from tasks.items import Item, Query
from tasks.protocols import FORMAT_SUBJECT, FORMATS, PROTOCOLS, USER_SUBJECT, Protocol, Statement
from tasks.world import USER_ATTRIBUTES, WORLD_ATTRIBUTES, build_world
from tasks.worlds import WorldView, builtin_world


def _query(subject: str, attribute: str, search_enabled: bool, instruction: str | None = None) -> Query:
    return Query(grammar.question(subject, attribute), search_enabled, instruction, subject, attribute)


def world_item(
    world: WorldView,
    entity: str,
    kind: str,
    search_enabled: bool,
    instruction: str | None,
    wanted: str | None,
    tag: str,
) -> Item:
    """A question about a world fact, with its answer key."""
    return Item(
        _query(entity, kind, search_enabled, instruction),
        f"world:{entity}:{kind}",
        world.value(entity, kind),
        wanted,
        False,
        kind=tag,
        candidates=world.candidates(kind),
    )


def probe_key(item: Item) -> str:
    """A general-probe question's identity: what it asks and in which format (what ``keep`` lists)."""
    return f"{item.item}|{item.query.instruction}"


def general_probe(
    n: int | None = None, seed: int = 0, world: WorldView | None = None, keep: Collection[str] | None = None
) -> list[Item]:
    """World questions with format instructions, ``tools none``; ``n`` items (default all).

    ``keep`` (probe keys, see ``probe_key``) limits the probe to questions the backbone answered right.
    """
    world = world or builtin_world()
    if world.name == "builtin":
        base = build_world()
        items = [
            world_item(
                world,
                e,
                a,
                False,
                held_out_instruction(base, e, a),
                held_out_instruction(base, e, a),
                "general",
            )
            for e in base.entities
            for a in WORLD_ATTRIBUTES
        ]
    else:
        items = [
            world_item(world, e, k, False, fmt, fmt, "general") for e, k in world.probe for fmt in FORMATS
        ]
    if keep is not None:
        kept = set(keep)
        items = [i for i in items if probe_key(i) in kept]
    if n is not None and n < len(items):
        items = random.Random(seed).sample(items, n)
    return items


def knowledge_probe(world: WorldView | None = None) -> list[Item]:
    """World facts no stream ever asks about, asked plainly (no instruction, no tool, no format wanted).

    Scored on the value alone (``correctness``): ``eval/general_knowledge``, what ``eval/forgetting``
    is measured on. Builtin world: every fact of the held-out entities (a stream draws only the
    others); real world: the probe facts (disjoint from the stream's and the evaluation's, and each
    known plainly by the untouched backbone: ``WorldView.restricted``). In a fixed order.
    """
    world = world or builtin_world()
    if world.stream_entities:
        held_out = sorted({e for k in world.kind_names for e in world.held_out[k]})
        questions = [(e, k) for e in held_out for k in world.kind_names]
    else:
        questions = list(world.probe)
    return [world_item(world, e, k, False, None, None, "knowledge") for e, k in questions]


def known_facts_probe(world: WorldView) -> list[Item]:
    """Every fact of ``world`` asked plainly (no instruction, no tool): which ones does a backbone know?"""
    return [world_item(world, e, k, False, None, None, "known") for (e, k) in sorted(world.facts)]


def _random_user_facts(rng: random.Random) -> dict[str, str]:
    return {a: rng.choice(pool) for a, pool in USER_ATTRIBUTES.items()}


def _personal_probe(
    n: int, seed: int, in_context: bool, others: tuple[int, int], kind: str, protocol: Protocol
) -> list[Item]:
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
        notes = tuple(protocol.note(Statement(USER_SUBJECT, a, facts[a])) for a in shown)
        items.append(
            Item(
                _query(USER_SUBJECT, attribute, True),
                f"fact:{attribute}",
                facts[attribute],
                None,
                not in_context,
                kind=kind,
                notes=notes,
                candidates=USER_ATTRIBUTES[attribute],
            )
        )
    return items


def context_reading_probe(n: int = 200, seed: int = 1, protocol: Protocol | None = None) -> list[Item]:
    """A personal question whose fact sits among 2-4 other facts of the same user in context.

    Search is offered; reading correctly means answering the right value without searching.
    """
    return _personal_probe(n, seed, True, (2, 4), "reading", protocol or PROTOCOLS["grammar"])


def search_probe(n: int = 200, seed: int = 2, protocol: Protocol | None = None) -> list[Item]:
    """A personal question whose fact is not in context (0-2 other facts are), search offered."""
    return _personal_probe(n, seed, False, (0, 2), "search", protocol or PROTOCOLS["grammar"])


def _draw_question(rng: random.Random, world: WorldView) -> tuple[str, str]:
    """A random world question; the builtin world draws an entity then a kind, as it always did."""
    if world.name == "builtin":
        return rng.choice(build_world().entities), rng.choice(list(WORLD_ATTRIBUTES))
    return rng.choice(sorted(world.facts))


def format_following_probe(n: int = 200, seed: int = 3, world: WorldView | None = None) -> list[Item]:
    """World questions with a random explicit format instruction."""
    world = world or builtin_world()
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        entity, kind = _draw_question(rng, world)
        fmt = rng.choice(FORMATS)
        items.append(world_item(world, entity, kind, rng.random() < 0.5, fmt, fmt, "format"))
    return items


def _bare_world_questions(n: int, seed: int, search_enabled: bool, kind: str, world: WorldView) -> list[Item]:
    """``n`` random world questions with no instruction, no note and any format wanted."""
    rng = random.Random(seed)
    return [
        world_item(world, *_draw_question(rng, world), search_enabled, None, None, kind) for _ in range(n)
    ]


def unprompted_format_probe(n: int = 200, seed: int = 4, world: WorldView | None = None) -> list[Item]:
    """World questions with no instruction and no preference in context (room to learn)."""
    return _bare_world_questions(n, seed, False, "unprompted", world or builtin_world())


def needless_search_probe(n: int = 200, seed: int = 6, world: WorldView | None = None) -> list[Item]:
    """World questions with the tool offered and nothing in context: searching is never needed."""
    return _bare_world_questions(n, seed, True, "needless_search", world or builtin_world())


def format_note_probe(
    n: int = 200, seed: int = 5, world: WorldView | None = None, protocol: Protocol | None = None
) -> list[Item]:
    """World questions whose wanted format is a preference noted in context among 0-2 other notes.

    Other format notes (for other kinds) and user facts sit beside it, so following the right
    note takes matching the question's kind, as a retrieved memory or the oracle's profile asks.
    """
    world, protocol = world or builtin_world(), protocol or PROTOCOLS["grammar"]
    kinds = list(world.kind_names)
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        entity, kind = _draw_question(rng, world)
        formats = {k: rng.choice(FORMATS) for k in kinds}
        other_kinds = rng.sample([k for k in kinds if k != kind], rng.randint(0, 2))
        notes = [protocol.note(Statement(FORMAT_SUBJECT, k, formats[k])) for k in [kind, *other_kinds]]
        facts = _random_user_facts(rng)
        notes += [protocol.note(Statement(USER_SUBJECT, a, facts[a])) for a in rng.sample(list(facts), 2)]
        rng.shuffle(notes)
        item = world_item(world, entity, kind, rng.random() < 0.5, None, formats[kind], "format_note")
        items.append(Item(**{**item.__dict__, "notes": tuple(notes)}))
    return items
