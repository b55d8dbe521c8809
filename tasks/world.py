"""The general world: entities with attributes the base model knows, and the vocabularies users draw from.

The world is fixed (generated from ``WORLD_SEED``): the builtin base is trained on it, and the
general probe measures how much of it a paradigm forgets. Users' private facts come from value
pools disjoint from the world's, so the base can never know them, only guess among plausible
values (chance = 1 / pool size).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from tasks import grammar

WORLD_SEED = 20261122

#: Attributes of world entities, with their possible values. These are also the "kinds" of
#: general question a user can hold a format preference about.
WORLD_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "yellow", "black", "white", "purple", "orange"),
    "food": ("rice", "bread", "fish", "soup", "apples", "cheese", "beans", "honey"),
    "home": ("north", "south", "east", "west", "hills", "coast", "valley", "island"),
}

#: Private attributes of a user, each with its pool of plausible values.
USER_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "dog": ("rex", "max", "bella", "luna", "charlie", "daisy", "milo", "rocky", "buddy", "coco"),
    "city": ("paris", "tokyo", "lima", "oslo", "cairo", "delhi", "quito", "seoul", "rome", "dublin"),
    "job": (
        "nurse",
        "pilot",
        "chef",
        "baker",
        "lawyer",
        "farmer",
        "painter",
        "teacher",
        "plumber",
        "dentist",
    ),
    "drink": ("tea", "coffee", "cocoa", "juice", "milk", "water", "cider", "lemonade", "kefir", "mate"),
    "sport": (
        "tennis",
        "golf",
        "rugby",
        "chess",
        "hockey",
        "boxing",
        "rowing",
        "karate",
        "surfing",
        "fencing",
    ),
}

N_ENTITIES = 48
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Fact:
    """One (subject, attribute, value) triple; subject ``my`` marks a user's private fact."""

    subject: str
    attribute: str
    value: str

    @property
    def key(self) -> str:
        return f"{self.subject} {self.attribute}"


@dataclass(frozen=True)
class World:
    """The fixed general world: ``facts[(entity, attribute)] = value``."""

    entities: tuple[str, ...]
    facts: dict[tuple[str, str], str]

    def value(self, entity: str, attribute: str) -> str:
        return self.facts[(entity, attribute)]

    def all_facts(self) -> list[Fact]:
        return [Fact(e, a, v) for (e, a), v in sorted(self.facts.items())]


def _entity_names(rng: random.Random, n: int) -> tuple[str, ...]:
    forbidden = set(_all_value_words()) | set(grammar.PROTOCOL_WORDS)
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(2))
        if name not in names and name not in forbidden:
            names.append(name)
    return tuple(names)


def _all_value_words() -> list[str]:
    return [v for pool in (*WORLD_ATTRIBUTES.values(), *USER_ATTRIBUTES.values()) for v in pool]


@cache
def build_world(seed: int = WORLD_SEED) -> World:
    """The world for ``seed`` (the default is the one the builtin base is trained on)."""
    rng = random.Random(seed)
    entities = _entity_names(rng, N_ENTITIES)
    facts = {(e, a): rng.choice(values) for e in entities for a, values in WORLD_ATTRIBUTES.items()}
    return World(entities=entities, facts=facts)


def vocabulary() -> list[str]:
    """Every word the builtin tokenizer needs, in a stable order."""
    world = build_world()
    words = [
        *grammar.PROTOCOL_WORDS,
        *WORLD_ATTRIBUTES,
        *USER_ATTRIBUTES,
        *_all_value_words(),
        *world.entities,
    ]
    return list(dict.fromkeys(words))
