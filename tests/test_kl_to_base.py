"""``eval/kl_to_base``: the mean per-token KL(policy || base) over the agent's own tokens."""

import copy

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from experiments.evaluation import kl_to_reference
from paradigms.agent import Episode


def _episodes(tokenizer, generator: torch.Generator) -> list[Episode]:
    """Episodes of several prompt and completion lengths, some with tool tokens (env mask 0)."""
    vocabulary = len(tokenizer)
    episodes = []
    for prompt_length, completion_length, tool in (
        (5, 7, None),
        (9, 4, (1, 3)),
        (3, 12, (4, 9)),
        (7, 1, None),
    ):
        ids = torch.randint(3, vocabulary, (prompt_length + completion_length,), generator=generator).tolist()
        mask = [1] * completion_length
        if tool is not None:
            mask[tool[0] : tool[1]] = [0] * (tool[1] - tool[0])
        episodes.append(Episode("", ids[:prompt_length], ids[prompt_length:], mask))
    return episodes


def _full_logits_kl(model, reference, tokenizer, episodes: list[Episode]) -> float:
    """The same KL one sequence at a time, from every position's logits."""
    total, count = 0.0, 0
    for e in episodes:
        ids = torch.tensor([e.prompt_ids + e.completion_ids])
        start = len(e.prompt_ids) - 1  # logits at t predict token t + 1
        agent = [start + i for i, keep in enumerate(e.env_mask) if keep]
        logp = torch.log_softmax(model(input_ids=ids).logits[0, agent].float(), -1)
        logq = torch.log_softmax(reference(input_ids=ids).logits[0, agent].float(), -1)
        total += float((logp.exp() * (logp - logq)).sum())
        count += len(agent)
    return total / count


@torch.no_grad()
def test_kl_to_base_is_zero_for_the_base_and_matches_the_kl_from_every_positions_logits(tiny_base):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    generator = torch.Generator().manual_seed(0)
    episodes = _episodes(tokenizer, generator)
    assert kl_to_reference(base, copy.deepcopy(base), tokenizer, episodes) == 0.0
    moved = copy.deepcopy(base)
    for parameter in moved.parameters():
        parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    kl = kl_to_reference(moved, base, tokenizer, episodes, batch_size=3)  # two passes, one of a single row
    assert kl > 1e-4
    assert abs(kl - _full_logits_kl(moved, base, tokenizer, episodes)) < 1e-5 * kl
