"""The builtin base model's training corpus and its competence probes, generated from the world.

Every example is a list of ``Segment``s: the prompt (never trained on), then the completion's
pieces, where the agent's own words are trained on and tool output (``<result> ... </result>``)
is not, exactly as the env mask of the rollout treats them.

The mixture teaches the skills the paradigms rely on:

- world facts, in any answer format, with an explicit ``use <format>`` instruction or not (no
  instruction: a uniformly random format, so RL has room to find a user's preference);
- reading a user's fact from context notes among several others (answer without searching);
- searching when a personal fact is not in context and the tool is offered (mostly: a share of
  guesses leaves RL room to learn answering without the tool), reading the search result;
- guessing a plausible value when the fact is unknown and no tool is offered;
- following a format preference noted in context for the question's kind;
- turning a correction or a successful answer into a one-line lesson (``note ...``);
- dense associative recall (many key lookups per sequence), which is what teaches the small
  model to match keys (see BASE-NOTES: the circuit appears after a plateau).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tasks import grammar
from tasks.world import USER_ATTRIBUTES, WORLD_ATTRIBUTES, World, build_world

#: Share of personal questions (tool offered, fact not in context) that the corpus answers by
#: guessing instead of searching: the base searches most of the time, not always.
GUESS_INSTEAD_OF_SEARCH = 0.12
#: Share of world questions (tool offered) where the corpus searches needlessly first, per
#: question kind unless a recipe says otherwise (``BaseRecipe.needless_search``).
NEEDLESS_SEARCH = 0.08


#: End of sequence, written after a lesson so the writer stops.
EOS = "<eos>"

#: Keys of the dense-recall sequences: every attribute name, world and personal.
RECALL_KEYS: tuple[str, ...] = (*WORLD_ATTRIBUTES, *USER_ATTRIBUTES)

#: Share of each kind of example in the base's corpus.
DEFAULT_MIXTURE: Mapping[str, float] = MappingProxyType(
    {
        "world": 0.12,
        "format_note": 0.14,
        "read": 0.16,
        "search": 0.10,
        "guess": 0.04,
        "reflect": 0.04,
        "recall": 0.40,
    }
)


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool


Example = list[Segment]


def held_out_instruction(world: World, entity: str, attribute: str) -> str:
    """The instruction format never paired with this fact in training (the probe uses it)."""
    index = (world.entities.index(entity) * 7 + list(WORLD_ATTRIBUTES).index(attribute) * 3) % len(
        grammar.FORMATS
    )
    return grammar.FORMATS[index]


def _random_profile(rng: random.Random) -> tuple[dict[str, str], dict[str, str]]:
    facts = {a: rng.choice(pool) for a, pool in USER_ATTRIBUTES.items()}
    formats = {k: rng.choice(grammar.FORMATS) for k in WORLD_ATTRIBUTES}
    return facts, formats


def _notes(rng, facts, formats, fact_attrs, format_kinds) -> list[str]:
    lines = [grammar.note_line(grammar.USER_SUBJECT, a, facts[a]) for a in fact_attrs]
    lines += [grammar.format_note(k, formats[k]) for k in format_kinds]
    rng.shuffle(lines)
    return lines


def _sample(rng: random.Random, population, k_min: int, k_max: int) -> list:
    k = rng.randint(k_min, min(k_max, len(population)))
    return rng.sample(list(population), k)


class CorpusGenerator:
    """Draws training examples; ``mixture`` maps example kind to its weight.

    ``needless_search`` maps a world question kind to the share of its tool-offered questions that
    open with a needless search call (default ``NEEDLESS_SEARCH`` for every kind); a share above
    one half teaches a base that searches on that kind under greedy decoding.
    """

    def __init__(
        self,
        seed: int,
        mixture: Mapping[str, float] | None = None,
        world: World | None = None,
        needless_search: Mapping[str, float] | None = None,
    ):
        self.rng = random.Random(seed)
        self.world = world or build_world()
        self.mixture = dict(mixture or DEFAULT_MIXTURE)
        self._kinds = list(self.mixture)
        self._weights = [self.mixture[k] for k in self._kinds]
        self.needless_search = {kind: NEEDLESS_SEARCH for kind in WORLD_ATTRIBUTES}
        self.needless_search.update(needless_search or {})
        unknown = sorted(set(self.needless_search) - set(WORLD_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"needless_search: unknown question kinds {unknown}; known: {list(WORLD_ATTRIBUTES)}"
            )

    def example(self) -> Example:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        return getattr(self, f"_{kind}")()

    # -- world questions -------------------------------------------------------------------
    def _world_question(self, format_note_kind: bool) -> Example:
        rng, world = self.rng, self.world
        entity = rng.choice(world.entities)
        attribute = rng.choice(list(WORLD_ATTRIBUTES))
        value = world.value(entity, attribute)
        facts, formats = _random_profile(rng)
        other_kinds = [k for k in WORLD_ATTRIBUTES if k != attribute]
        # with the preference noted, at least one other kind's note stands beside it, so following
        # it takes matching the question's kind, not just copying the only format in sight
        kinds = _sample(rng, other_kinds, 1 if format_note_kind else 0, len(other_kinds))
        instruction = None
        if format_note_kind:
            kinds.append(attribute)
            fmt = formats[attribute]
        elif rng.random() < 0.5:
            allowed = [f for f in grammar.FORMATS if f != held_out_instruction(world, entity, attribute)]
            instruction = fmt = rng.choice(allowed)
        else:
            fmt = rng.choice(grammar.FORMATS)
        notes = _notes(rng, facts, formats, _sample(rng, list(USER_ATTRIBUTES), 0, 3), kinds)
        search = rng.random() < 0.5
        prompt = grammar.build_prompt(
            grammar.question(entity, attribute), search_enabled=search, notes=notes, instruction=instruction
        )
        completion: Example = []
        if search and rng.random() < self.needless_search[attribute]:
            completion += [
                Segment(grammar.search_call(f"{entity} {attribute}"), True),
                Segment(grammar.search_result([]), False),
            ]
        completion.append(Segment(grammar.answer(value, fmt), True))
        return [Segment(prompt, False), *completion]

    def _world(self) -> Example:
        return self._world_question(format_note_kind=False)

    def _format_note(self) -> Example:
        return self._world_question(format_note_kind=True)

    # -- personal questions ------------------------------------------------------------------
    def _personal(self, in_context: bool, search: bool) -> Example:
        rng = self.rng
        facts, formats = _random_profile(rng)
        attribute = rng.choice(list(USER_ATTRIBUTES))
        others = [a for a in USER_ATTRIBUTES if a != attribute]
        fact_attrs = _sample(rng, others, 1 if in_context else 0, 4)
        if in_context:
            fact_attrs.append(attribute)
        notes = _notes(rng, facts, formats, fact_attrs, _sample(rng, list(WORLD_ATTRIBUTES), 0, 2))
        instruction = rng.choice(grammar.FORMATS) if rng.random() < 0.3 else None
        fmt = instruction or rng.choice(grammar.FORMATS)
        prompt = grammar.build_prompt(
            grammar.question(grammar.USER_SUBJECT, attribute),
            search_enabled=search,
            notes=notes,
            instruction=instruction,
        )
        completion: Example = []
        value = facts[attribute]
        if not in_context:
            if search and rng.random() >= GUESS_INSTEAD_OF_SEARCH:
                result_attrs = [attribute, *_sample(rng, others, 0, 2)]
                rng.shuffle(result_attrs)
                lines = [grammar.fact_line(grammar.USER_SUBJECT, a, facts[a]) for a in result_attrs]
                completion += [
                    Segment(grammar.search_call(f"{grammar.USER_SUBJECT} {attribute}"), True),
                    Segment(grammar.search_result(lines), False),
                ]
            else:
                value = rng.choice(USER_ATTRIBUTES[attribute])
        completion.append(Segment(grammar.answer(value, fmt), True))
        return [Segment(prompt, False), *completion]

    def _read(self) -> Example:
        return self._personal(in_context=True, search=self.rng.random() < 0.7)

    def _search(self) -> Example:
        return self._personal(in_context=False, search=True)

    def _guess(self) -> Example:
        return self._personal(in_context=False, search=False)

    # -- lessons -----------------------------------------------------------------------------
    def _reflect(self) -> Example:
        rng, world = self.rng, self.world
        if rng.random() < 0.5:
            attribute = rng.choice(list(USER_ATTRIBUTES))
            q = grammar.question(grammar.USER_SUBJECT, attribute)
            truth = rng.choice(USER_ATTRIBUTES[attribute])
            said_value = rng.choice(USER_ATTRIBUTES[attribute])
            said = grammar.render_answer(said_value, rng.choice(grammar.FORMATS))
            correct_line = grammar.fact_line(grammar.USER_SUBJECT, attribute, truth)
            scalar_lesson = grammar.note_line(grammar.USER_SUBJECT, attribute, said_value)
            good = said_value == truth or rng.random() < 0.3
        else:
            entity = rng.choice(world.entities)
            attribute = rng.choice(list(WORLD_ATTRIBUTES))
            q = grammar.question(entity, attribute)
            wanted = rng.choice(grammar.FORMATS)
            said_format = rng.choice(grammar.FORMATS)
            said = grammar.render_answer(world.value(entity, attribute), said_format)
            correct_line = grammar.fact_line(grammar.FORMAT_KEY, attribute, wanted)
            scalar_lesson = grammar.format_note(attribute, said_format)
            good = said_format == wanted or rng.random() < 0.3
        if rng.random() < 0.5:
            prompt = grammar.reflection_prompt(q, said, f"correction {correct_line}")
            lesson = f"note {correct_line}"
        else:
            prompt = grammar.reflection_prompt(q, said, f"reward {'good' if good else 'bad'}")
            lesson = scalar_lesson if good else "none"
        return [Segment(prompt, False), Segment(f"{lesson} {EOS}", True)]

    # -- dense associative recall ------------------------------------------------------------
    def _recall(self) -> Example:
        """2-5 notes whose values share one pool, then every key asked again (loss on each value).

        Values are drawn without regard to the key's type (a dog may be called ``paris`` here),
        and format notes use keys beyond the three real kinds, so the only way to recall is to
        match the key: the induction circuit that reading several memories needs.
        """
        rng = self.rng
        if rng.random() < 0.5:
            subject, values = grammar.FORMAT_KEY, list(grammar.FORMATS)
        else:
            subject, values = grammar.USER_SUBJECT, [v for pool in USER_ATTRIBUTES.values() for v in pool]
        keys = _sample(rng, RECALL_KEYS, 2, 5)
        pairs = [(key, rng.choice(values)) for key in keys]
        notes = [grammar.note_line(subject, key, value) for key, value in pairs]
        segments: Example = [Segment("tools none " + " ".join(notes), False)]
        rng.shuffle(pairs)
        for key, value in pairs:
            segments.append(Segment(f"{grammar.question(subject, key)} {grammar.ANSWER_OPEN}", False))
            body = grammar.render_answer(value, rng.choice(grammar.FORMATS))
            segments.append(Segment(f"{body} {grammar.ANSWER_CLOSE}", True))
        return segments
