"""``eval/kl_to_base``: the mean per-token KL(policy || base) over the agent's own tokens."""

import copy
from contextlib import contextmanager

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from experiments.evaluation import _kept_logits, _mean_kl, kl_to_reference
from paradigms.agent import Episode
from paradigms.rl.batching import collate

#: (prompt length, completion length, tool tokens' span in the completion or None)
SHAPES = ((5, 7, None), (9, 4, (1, 3)), (3, 12, (4, 9)), (7, 1, None))


def _episodes(tokenizer, generator: torch.Generator, shapes=SHAPES, shared: int = 0) -> list[Episode]:
    """Episodes of several prompt and completion lengths, some with tool tokens (env mask 0); with
    ``shared``, every prompt begins with the same ``shared`` tokens (a chat template's system message)
    before its own."""
    vocabulary = len(tokenizer)
    prefix = torch.randint(3, vocabulary, (shared,), generator=generator).tolist() if shared else []
    episodes = []
    for prompt_length, completion_length, tool in shapes:
        ids = torch.randint(3, vocabulary, (prompt_length + completion_length,), generator=generator).tolist()
        mask = [1] * completion_length
        if tool is not None:
            mask[tool[0] : tool[1]] = [0] * (tool[1] - tool[0])
        episodes.append(Episode("", prefix + ids[:prompt_length], ids[prompt_length:], mask))
    return episodes


@contextmanager
def _forward_calls(*models):
    """A list that gains an entry each time one of ``models`` runs a forward pass, while inside."""
    calls = []
    hooks = [m.register_forward_pre_hook(lambda *_: calls.append(1)) for m in models]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


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
    assert _mean_kl(base, copy.deepcopy(base), tokenizer, episodes, batch_size=64) == 0.0  # the passes'
    moved = copy.deepcopy(base)
    for parameter in moved.parameters():
        parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    kl = kl_to_reference(moved, base, tokenizer, episodes, batch_size=3)  # two passes, one of a single row
    assert kl > 1e-4
    assert abs(kl - _full_logits_kl(moved, base, tokenizer, episodes)) < 1e-5 * kl


@torch.no_grad()
def test_reading_a_shared_prefix_once_gives_the_full_pass_logits_and_kl(tiny_base):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    generator = torch.Generator().manual_seed(1)
    episodes = _episodes(
        tokenizer, generator, ((4, 6, None), (2, 9, (2, 5)), (6, 3, None), (3, 5, (1, 2))), 10
    )
    batch = collate(episodes, tokenizer.pad_token_id, torch.device("cpu"))
    ids, attention = batch.input_ids, batch.attention_mask
    width = ids.shape[1]
    keep = width - 11
    shapes = []
    hook = base.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    once = _kept_logits(base, ids, attention, keep, shared=10)
    full = _kept_logits(base, ids, attention, keep, shared=0)
    hook.remove()
    assert shapes == [(1, 10), (len(episodes), width - 10), (len(episodes), width)]  # the prefix read once
    assert once.shape == full.shape == (len(episodes), keep, base.get_output_embeddings().weight.shape[0])
    valid = attention[:, -keep:].bool()
    assert torch.allclose(once[valid], full[valid], atol=1e-5, rtol=0)

    assert _mean_kl(base, copy.deepcopy(base), tokenizer, episodes, batch_size=64) == 0.0
    moved = copy.deepcopy(base)
    for parameter in moved.parameters():
        parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    kl = kl_to_reference(moved, base, tokenizer, episodes)
    assert kl > 1e-4
    assert abs(kl - _full_logits_kl(moved, base, tokenizer, episodes)) < 1e-5 * kl


@torch.no_grad()
def test_kl_to_a_model_computing_as_the_reference_is_zero_without_a_forward_pass(tiny_base):
    """A ``full_ft`` run's first evaluation: the policy is a copy of the base, in training mode. The KL reads
    both in evaluation mode, sees they compute the same and returns 0.0 (what the passes give, above)
    without running them; each model is back in its own mode after. A moved copy runs the passes."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    reference = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    policy = copy.deepcopy(reference).train()
    episodes = _episodes(tokenizer, torch.Generator().manual_seed(2))
    with _forward_calls(policy, reference) as calls:
        assert kl_to_reference(policy, reference, tokenizer, episodes) == 0.0
        assert calls == []
        assert policy.training and all(m.training for m in policy.modules())
        assert not any(m.training for m in reference.modules())
        policy.lm_head.weight[0, 0] += 1.0
        assert kl_to_reference(policy, reference, tokenizer, episodes) >= 0.0
        assert len(calls) >= 2 and policy.training  # both models read the episodes


@torch.no_grad()
def test_kl_to_a_fresh_lora_wrapper_of_the_reference_is_zero_without_a_forward_pass(tiny_base):
    """An ``adapter`` or ``hybrid`` run's first evaluation: the policy is the base wrapped with a LoRA
    adapter whose ``lora_B`` is still PEFT's zeros, in training mode. Its passes give exactly 0.0; the KL
    returns that without running them. Once one adapter weight moves, the passes run."""
    from peft import LoraConfig, get_peft_model

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    reference = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    policy = get_peft_model(copy.deepcopy(reference), config).eval()
    episodes = _episodes(tokenizer, torch.Generator().manual_seed(3))
    assert _mean_kl(policy, reference, tokenizer, episodes, batch_size=3) == 0.0  # the passes'
    policy.train()
    with _forward_calls(policy, reference) as calls:
        assert kl_to_reference(policy, reference, tokenizer, episodes) == 0.0
        assert calls == [] and policy.training
        layers = [m for m in policy.modules() if hasattr(m, "lora_B")]
        layers[-1].lora_B["default"].weight[0, 0] = 0.5  # the last LoRA layer's first adapter weight
        assert kl_to_reference(policy, reference, tokenizer, episodes) > 0.0
        assert len(calls) >= 2 and policy.training
