"""The world facts a task draws its general questions from, and how they are split.

Two worlds exist, one per protocol family:

- ``builtin``: the harness's own fixed world (``tasks.world``: 48 made-up entities with a color, a
  food and a home), which the builtin base is trained on. Its splits are the ones the project has
  always used (stream entities and held-out evaluation entities; the general probe asks every fact
  with a held-out instruction).
- ``real``: real-world facts a pretrained chat model may know (``tasks/data/real_world.json``:
  capitals, chemical symbols, opposites), written for this project. A backbone knows only some of
  them, so a run uses the world *restricted* to the facts its untouched backbone answers right
  (``WorldView.restricted``), measured once per backbone and cached with it. Its facts are split
  per kind into held-out evaluation facts, general-probe facts and stream facts, disjoint, so the
  general probe asks about knowledge the personal stream never trains on.

A *kind* is a world attribute (``color``, ``capital``...): the kinds of general question a user
holds an answer-format preference about. Pure Python; no model is touched here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tasks.world import WORLD_ATTRIBUTES, build_world

REAL_WORLD_FILE = Path(__file__).parent / "data" / "real_world.json"
#: Held-out facts per kind in the real world: the preference suites' evaluation items.
REAL_HELD_OUT_PER_KIND = 8
#: General-probe facts per kind in the real world (before the backbone's own filter).
REAL_PROBE_PER_KIND = 12
#: Stream facts a kind needs at least, so a stream is not one question repeated.
REAL_MIN_STREAM_PER_KIND = 6
#: Held-out entities per kind asked in the per-phase (continual) evaluation.
PHASE_ITEMS_PER_KIND = 4
#: Held-out questions per kind in a preference suite's personal evaluation (builtin: entities sampled).
EVAL_ENTITIES = 8


@dataclass(frozen=True)
class Kind:
    """A kind of world question and how a chat protocol asks it (``plural`` names the kind in a note)."""

    name: str
    question: str = "What is the {kind} of {entity}?"
    plural: str = ""

    def ask(self, entity: str) -> str:
        """The question in natural language, e.g. ``What is the capital of Peru?``."""
        return self.question.format(entity=entity, kind=self.name)


class WorldTooSmall(ValueError):
    """A backbone knows too few facts of a kind for the real world's splits; says which and how many."""


@dataclass(frozen=True)
class WorldView:
    """The facts a run's general questions come from, split into stream, evaluation and probe.

    ``facts[(entity, kind)]`` is the value. ``held_out[kind]`` lists the evaluation entities of a
    kind, ``probe`` the general-probe questions ``(entity, kind)``, ``stream`` the questions a
    stream may ask. ``known`` is the number of facts kept by ``restricted`` (None: unrestricted).
    """

    name: str
    kinds: tuple[Kind, ...]
    facts: Mapping[tuple[str, str], str]
    held_out: Mapping[str, tuple[str, ...]]
    probe: tuple[tuple[str, str], ...]
    stream: tuple[tuple[str, str], ...]
    stream_entities: tuple[str, ...] = ()
    known: int | None = None
    _candidates: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)

    @property
    def kind_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.kinds)

    def kind(self, name: str) -> Kind:
        for kind in self.kinds:
            if kind.name == name:
                return kind
        raise KeyError(f"unknown kind {name!r} in world {self.name!r}; known: {', '.join(self.kind_names)}")

    def value(self, entity: str, kind: str) -> str:
        return self.facts[(entity, kind)]

    def candidates(self, kind: str) -> tuple[str, ...]:
        """Every value of ``kind`` in the whole world (what a free-text answer is checked against)."""
        return self._candidates[kind]

    # -- drawing questions --------------------------------------------------------------------
    def draw_stream_question(self, rng: random.Random) -> tuple[str, str]:
        """One ``(entity, kind)`` stream question, drawn with ``rng``.

        The builtin world draws an entity, then a kind (the order its streams always used, so its
        streams are unchanged); the real world draws one of its stream facts.
        """
        if self.stream_entities:
            return rng.choice(self.stream_entities), rng.choice(list(self.kind_names))
        return rng.choice(self.stream)

    def eval_questions(self, rng: random.Random) -> list[tuple[str, str]]:
        """A preference suite's personal evaluation questions (held-out entities only)."""
        if self.stream_entities:  # builtin: a per-seed sample of held-out entities, every kind
            entities = rng.sample(list(self.held_out[self.kind_names[0]]), EVAL_ENTITIES)
            return [(e, k) for e in entities for k in self.kind_names]
        return [(e, k) for k in self.kind_names for e in self.held_out[k][:EVAL_ENTITIES]]

    def phase_entities(self, kind: str) -> tuple[str, ...]:
        """The held-out entities the per-phase evaluation asks about ``kind``."""
        return self.held_out[kind][:PHASE_ITEMS_PER_KIND]

    # -- restriction to what a backbone knows ---------------------------------------------------
    def restricted(self, known: Iterable[tuple[str, str]]) -> WorldView:
        """The real world limited to ``known`` facts, re-split (the builtin world is returned as is).

        Raises ``WorldTooSmall`` when a kind keeps fewer facts than its splits need.
        """
        if self.stream_entities:
            return self
        return real_world(frozenset(tuple(k) for k in known))

    def digest_payload(self) -> dict:
        """What identifies this view (for dataset fingerprints and caches)."""
        return {
            "name": self.name,
            "known": self.known,
            "probe": [list(q) for q in self.probe],
            "held_out": {k: list(v) for k, v in self.held_out.items()},
        }


@cache
def builtin_world() -> WorldView:
    """The builtin base's world, split exactly as the project's suites always split it."""
    world = build_world()
    entities = list(world.entities)
    n_held = round(len(entities) * 0.25)
    stream_entities, held = entities[n_held:], entities[:n_held]
    kinds = tuple(Kind(name) for name in WORLD_ATTRIBUTES)
    return WorldView(
        name="builtin",
        kinds=kinds,
        facts=dict(world.facts),
        held_out={k.name: tuple(held) for k in kinds},
        probe=tuple((e, a) for e in world.entities for a in WORLD_ATTRIBUTES),
        stream=tuple((e, a) for e in stream_entities for a in WORLD_ATTRIBUTES),
        stream_entities=tuple(stream_entities),
        _candidates={a: tuple(values) for a, values in WORLD_ATTRIBUTES.items()},
    )


@cache
def _real_data() -> dict:
    return json.loads(REAL_WORLD_FILE.read_text(encoding="utf-8"))


def real_kinds() -> tuple[Kind, ...]:
    data = _real_data()["kinds"]
    return tuple(Kind(name, spec["question"], spec["plural"]) for name, spec in data.items())


def real_facts() -> dict[tuple[str, str], str]:
    """Every fact of the real-world data file: ``{(entity, kind): value}``."""
    return {
        (entity, kind): value
        for kind, spec in _real_data()["kinds"].items()
        for entity, value in spec["facts"].items()
    }


@cache
def real_world(known: frozenset[tuple[str, str]] | None = None) -> WorldView:
    """The real world (restricted to ``known`` facts when given), split per kind.

    Within a kind, facts are put in a fixed pseudo-random order (independent of ``known``), then the
    first ``REAL_HELD_OUT_PER_KIND`` kept facts are held out for evaluation, the next
    ``REAL_PROBE_PER_KIND`` form the general probe and the rest the stream.
    """
    facts = real_facts()
    kinds = real_kinds()
    held_out: dict[str, tuple[str, ...]] = {}
    probe: list[tuple[str, str]] = []
    stream: list[tuple[str, str]] = []
    for kind in kinds:
        entities = sorted(e for (e, k) in facts if k == kind.name)
        random.Random(f"real-world-split-{kind.name}").shuffle(entities)
        if known is not None:
            entities = [e for e in entities if (e, kind.name) in known]
        needed = REAL_HELD_OUT_PER_KIND + REAL_PROBE_PER_KIND + REAL_MIN_STREAM_PER_KIND
        if len(entities) < needed:
            raise WorldTooSmall(
                f"the backbone answers {len(entities)} {kind.name} questions of the real world right; "
                f"the splits need {needed} (held-out {REAL_HELD_OUT_PER_KIND}, probe "
                f"{REAL_PROBE_PER_KIND}, stream {REAL_MIN_STREAM_PER_KIND}): add facts to "
                f"{REAL_WORLD_FILE.name} or choose a stronger backbone"
            )
        held_out[kind.name] = tuple(entities[:REAL_HELD_OUT_PER_KIND])
        cut = REAL_HELD_OUT_PER_KIND + REAL_PROBE_PER_KIND
        probe += [(e, kind.name) for e in entities[REAL_HELD_OUT_PER_KIND:cut]]
        stream += [(e, kind.name) for e in entities[cut:]]
    kept = {q: v for q, v in facts.items() if known is None or q in known}
    return WorldView(
        name="real",
        kinds=kinds,
        facts=kept,
        held_out=held_out,
        probe=tuple(probe),
        stream=tuple(stream),
        known=None if known is None else len(kept),
        _candidates={
            kind.name: tuple(v for (_, k), v in sorted(facts.items()) if k == kind.name) for kind in kinds
        },
    )


WORLDS = {"builtin": builtin_world, "real": real_world}
