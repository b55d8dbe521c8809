"""Reflection: turning one scored, possibly corrected response into a lesson (a note).

Three modes:

- ``template``: the correction as a note (``note my dog rex .`` / ``The user's dog is called
  Rex.``), or, for a fully successful answer, what it got right (the value for a personal fact, the
  format for a world question); nothing otherwise.
- ``llm``: the backbone writes the lesson from the protocol's reflection prompt (question, what it
  said, and the correction or the reward), greedy; a lesson the protocol cannot read is dropped.
- ``none``: no lesson; the raw experience is stored instead (question, answer, outcome).

Every text goes through the run's protocol, so the builtin grammar and a chat model's natural
language share this code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from tasks.items import Item
from tasks.protocols import FORMAT_SUBJECT, USER_SUBJECT, Protocol, Statement

REFLECTION_MODES = ("llm", "template", "none")


def succeeded(components: dict[str, float]) -> bool:
    """A response is a success when its value is right and its format is what the user wants."""
    return components.get("correctness", 0.0) >= 1.0 and components.get("format", 0.0) >= 1.0


def key_of(lesson: str, protocol: Protocol) -> str | None:
    """What a lesson is about: ``fact:dog``, ``format:color`` or ``world:kalo:color`` (None: unreadable)."""
    statement = protocol.note_statement(lesson)
    return statement.key if statement is not None else None


def template_lesson(
    item: Item,
    completion: str,
    components: dict[str, float],
    correction: Statement | None,
    protocol: Protocol,
) -> str | None:
    if correction is not None:
        return protocol.note(correction)
    if not succeeded(components):
        return None
    parsed = protocol.parse_answer(completion, item.candidates)
    kind, *rest = item.item.split(":", 2)
    if kind == "fact":
        return protocol.note(Statement(USER_SUBJECT, rest[0], parsed.value))
    if item.query.instruction is None and item.wanted_format is not None:
        return protocol.note(Statement(FORMAT_SUBJECT, rest[1], parsed.format))
    return None


def raw_experience(item: Item, completion: str, components: dict[str, float], protocol: Protocol) -> str:
    """The episode itself, for ``none``: question, the answer given, and whether it was good."""
    said = protocol.parse_answer(completion, item.candidates)
    outcome = "good" if succeeded(components) else "bad"
    return f"{protocol.question_text(item.query)} said {said.value or 'nothing'} reward {outcome}"


def reflection_prompt(
    item: Item,
    completion: str,
    components: dict[str, float],
    correction: Statement | None,
    protocol: Protocol,
    tokenizer,
    feedback: str | None = None,
) -> str:
    """The protocol's reflection prompt; ``feedback`` is the correction in the user's own words (default:
    the protocol's wording of ``correction``)."""
    said = protocol.parse_answer(completion, item.candidates)
    if correction is None:
        feedback = None
    elif feedback is None:
        feedback = protocol.correction(correction)
    return protocol.reflection_prompt(item.query, said, feedback, succeeded(components), tokenizer)


@torch.no_grad()
def llm_lessons(
    model,
    tokenizer,
    prompts: Sequence[str],
    protocol: Protocol,
    on_tokens: Callable[[int], None] | None = None,
) -> list[str | None]:
    """Greedy lessons written by the backbone, one per prompt (None when unreadable or ``none``).

    ``on_tokens`` receives the token positions the generation ran the model over (the prompts' tokens
    plus, per generation step, one per row of the batch), for the compute ledger.
    """
    if not prompts:
        return []
    encoded = [protocol.encode_prompt(p, tokenizer) for p in prompts]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=device)  # (B, T)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
    was_training = model.training
    model.eval()
    try:
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=protocol.lesson_max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
    finally:
        model.train(was_training)
    if on_tokens is not None:
        on_tokens(sum(len(ids) for ids in encoded) + len(encoded) * (output.shape[1] - width))
    texts = tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
    return [protocol.parse_lesson(text) for text in texts]
