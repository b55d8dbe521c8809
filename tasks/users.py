"""Simulated users: private facts, hidden format preferences, a drift schedule, and feedback.

A user is generated from a seed. Its profile is a list of phases: phase 0 is the initial
profile, and each later phase changes some facts and preferences (each item changes at most
once, so every item belongs to exactly one phase: the one where its current value was set).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tasks.protocols.base import FORMAT_SUBJECT, FORMATS, USER_SUBJECT, Statement
from tasks.world import USER_ATTRIBUTES, WORLD_ATTRIBUTES

#: The builtin world's question kinds: the kinds a user holds format preferences about by default.
BUILTIN_KINDS: tuple[str, ...] = tuple(WORLD_ATTRIBUTES)

#: Users a run evaluates have seeds below this (the run config refuses larger ones); the users
#: ``harness meta-train`` learns an adapter start from are drawn at or above it, so no user seen in
#: meta-training is ever evaluated.
META_USER_SEED_START = 1_000_000_000
#: Users ``harness tune`` chooses hyperparameters on have seeds from here up to
#: ``META_USER_SEED_START`` (the run config's ``task.users: tuning``); an evaluation run
#: (``task.users: evaluation``, the default) refuses them, so no tuning user is ever evaluated.
TUNING_USER_SEED_START = 900_000_000


def meta_user_seeds(n: int) -> list[int]:
    """The seeds of the first ``n`` meta-training users (disjoint from every evaluable seed)."""
    return [META_USER_SEED_START + i for i in range(n)]


def tuning_user_seeds(n: int) -> list[int]:
    """The seeds of the first ``n`` tuning users (disjoint from evaluation and meta-training users)."""
    if not 0 < n <= META_USER_SEED_START - TUNING_USER_SEED_START:
        raise ValueError(
            f"the number of tuning users must be in 1..{META_USER_SEED_START - TUNING_USER_SEED_START}"
        )
    return [TUNING_USER_SEED_START + i for i in range(n)]


def user_population(seed: int) -> str:
    """Which population a user seed belongs to: ``evaluation``, ``tuning`` or ``meta``."""
    if seed >= META_USER_SEED_START:
        return "meta"
    return "tuning" if seed >= TUNING_USER_SEED_START else "evaluation"


@dataclass(frozen=True)
class Profile:
    """A user's state during one phase: private facts and format preference per question kind."""

    facts: dict[str, str]
    formats: dict[str, str]

    def statements(self) -> list[Statement]:
        """The whole profile, facts then format preferences (what the ``oracle`` control sees)."""
        return self.fact_statements() + [
            Statement(FORMAT_SUBJECT, kind, fmt) for kind, fmt in self.formats.items()
        ]

    def fact_statements(self) -> list[Statement]:
        """The profile's private facts (the user's knowledge base, which the search tool reads)."""
        return [Statement(USER_SUBJECT, a, v) for a, v in self.facts.items()]


@dataclass(frozen=True)
class User:
    """A simulated user: ``phases[i]`` is the profile in force during drift phase i.

    ``changed_in[i]`` lists the items (``"fact:<attr>"`` or ``"format:<kind>"``) whose value was
    set in phase i (phase 0: every item).
    """

    seed: int
    phases: tuple[Profile, ...]
    changed_in: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    def profile(self, phase: int) -> Profile:
        return self.phases[min(phase, len(self.phases) - 1)]

    def phase_of(self, item: str, phase: int) -> int:
        """The phase in which ``item``'s value in force at ``phase`` was set."""
        for p in range(min(phase, len(self.phases) - 1), -1, -1):
            if item in self.changed_in[p]:
                return p
        raise KeyError(item)

    def correction(self, item: str, phase: int) -> Statement:
        """What the user corrects ``item`` to (``fact:dog`` or ``format:color``) in ``phase``; a protocol
        words it (``my dog rex .`` / ``My dog is called Rex.``)."""
        kind, name = item.split(":", 1)
        profile = self.profile(phase)
        if kind == "fact":
            return Statement(USER_SUBJECT, name, profile.facts[name])
        return Statement(FORMAT_SUBJECT, name, profile.formats[name])


def population_formats(kinds: tuple[str, ...] = BUILTIN_KINDS) -> dict[str, str]:
    """The user population's favourite answer format per question kind (fixed, like the world)."""
    rng = random.Random("population-formats")
    return {kind: rng.choice(FORMATS) for kind in kinds}


def make_user(
    seed: int,
    n_phases: int = 1,
    change_fraction: float = 0.5,
    shared_formats: float = 0.0,
    kinds: tuple[str, ...] = BUILTIN_KINDS,
) -> User:
    """A user from ``seed`` with ``n_phases`` drift phases.

    Facts are uniform over their pools. For each question kind, with probability ``shared_formats``
    the user holds the population's favourite format (``population_formats``), otherwise a uniformly
    random one (which may be the favourite too): at 0 users share nothing, at 1 every user wants the
    same formats. The share is drawn from its own random stream, so facts, the drift schedule and,
    at 0, the whole user are the same for every value. In each phase after the first,
    ``change_fraction`` of the not-yet-changed items get a new value (different from the old one).
    ``kinds`` are the world's question kinds (the builtin world's by default; the real world's
    for chat backbones). Deterministic in ``seed``.
    """
    if not 0.0 <= shared_formats <= 1.0:
        raise ValueError(f"shared_formats must be in [0, 1], got {shared_formats}")
    rng = random.Random(f"user-{seed}")
    facts = {a: rng.choice(pool) for a, pool in USER_ATTRIBUTES.items()}
    formats = {kind: rng.choice(FORMATS) for kind in kinds}
    if shared_formats > 0:
        favourite, share_rng = population_formats(kinds), random.Random(f"user-shared-{seed}")
        for kind in formats:
            if share_rng.random() < shared_formats:
                formats[kind] = favourite[kind]
    phases = [Profile(dict(facts), dict(formats))]
    items = [f"fact:{a}" for a in facts] + [f"format:{k}" for k in formats]
    changed: list[tuple[str, ...]] = [tuple(items)]
    unchanged = list(items)
    for _ in range(1, n_phases):
        n_change = max(1, round(change_fraction * len(items) / max(1, n_phases - 1)))
        rng.shuffle(unchanged)
        now, unchanged = unchanged[:n_change], unchanged[n_change:]
        for item in now:
            kind, name = item.split(":", 1)
            if kind == "fact":
                facts[name] = rng.choice([v for v in USER_ATTRIBUTES[name] if v != facts[name]])
            else:
                formats[name] = rng.choice([f for f in FORMATS if f != formats[name]])
        phases.append(Profile(dict(facts), dict(formats)))
        changed.append(tuple(sorted(now)))
    return User(seed=seed, phases=tuple(phases), changed_in=tuple(changed))
