"""Reflection: turning one scored, possibly corrected response into a lesson (a ``note ...`` line).

Three modes:

- ``template``: the correction verbatim (``note my dog rex .``), or, for a fully successful
  answer, what it got right (the value for a personal fact, the format for a world question);
  nothing otherwise.
- ``llm``: the backbone writes the lesson from the reflection prompt (question, what it said,
  and the correction or the reward), greedy; a malformed lesson is dropped.
- ``none``: no lesson; the raw experience is stored instead (question, answer, outcome).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tasks import grammar
from tasks.items import Item

REFLECTION_MODES = ("llm", "template", "none")


def succeeded(components: dict[str, float]) -> bool:
    """A response is a success when its value is right and its format is what the user wants."""
    return components.get("correctness", 0.0) >= 1.0 and components.get("format", 0.0) >= 1.0


def key_of(lesson: str) -> str | None:
    """What a lesson is about: ``fact:dog``, ``format:color`` or ``world:kalo:color``."""
    parsed = grammar.parse_note(lesson)
    if parsed is None:
        return None
    subject, attribute, _ = parsed
    if subject == grammar.USER_SUBJECT:
        return f"fact:{attribute}"
    if subject == grammar.FORMAT_KEY:
        return f"format:{attribute}"
    return f"world:{subject}:{attribute}"


def template_lesson(
    item: Item, completion: str, components: dict[str, float], correction: str | None
) -> str | None:
    if correction is not None:
        return f"note {correction}"
    if not succeeded(components):
        return None
    parsed = grammar.parse_answer(completion)
    kind, *rest = item.item.split(":")
    if kind == "fact":
        return grammar.note_line(grammar.USER_SUBJECT, rest[0], parsed.value)
    if item.query.instruction is None and item.wanted_format is not None:
        return grammar.format_note(rest[1], parsed.format)
    return None


def raw_experience(item: Item, completion: str, components: dict[str, float]) -> str:
    """The episode itself, for ``none``: question, the answer given, and whether it was good."""
    said = grammar.parse_answer(completion)
    outcome = "good" if succeeded(components) else "bad"
    return f"{item.query.question} said {said.value or 'nothing'} reward {outcome}"


def reflection_prompt(
    item: Item, completion: str, components: dict[str, float], correction: str | None
) -> str:
    parsed = grammar.parse_answer(completion)
    said = grammar.render_answer(parsed.value, parsed.format) if parsed.well_formed else "nothing"
    feedback = (
        f"correction {correction}" if correction else f"reward {'good' if succeeded(components) else 'bad'}"
    )
    return grammar.reflection_prompt(item.query.question, said, feedback)


@torch.no_grad()
def llm_lessons(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 8) -> list[str | None]:
    """Greedy lessons written by the backbone, one per prompt (None when malformed or ``none``)."""
    if not prompts:
        return []
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    finally:
        model.train(was_training)
    texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return [grammar.parse_lesson(text) for text in texts]
