"""``paradigms.lora_identity.adds_nothing_to``: a fresh LoRA wrapper computes exactly as its base, and
anything that could make it compute otherwise answers "no"."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from paradigms.lora_identity import adds_nothing_to
from tests.chat_model import chat_tokenizer, tiny_chat_model


@pytest.fixture(scope="module")
def base():
    return tiny_chat_model(chat_tokenizer()).eval()


def _wrapped(base, **options):
    """A fresh LoRA wrapper of a copy of ``base`` (PEFT's start: ``lora_B`` all zeros), in evaluation mode."""
    settings = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    return get_peft_model(copy.deepcopy(base), LoraConfig(**{**settings, **options})).eval()


@torch.no_grad()
def test_a_fresh_lora_wrapper_adds_nothing_and_gives_its_bases_logits_bit_for_bit(base):
    policy = _wrapped(base)
    assert adds_nothing_to(policy, base)
    ids = torch.randint(3, base.config.vocab_size, (3, 17), generator=torch.Generator().manual_seed(0))
    assert torch.equal(policy(input_ids=ids).logits, base(input_ids=ids).logits)
    assert adds_nothing_to(_wrapped(base, use_rslora=True, lora_dropout=0.1), base)  # dropout off in eval
    assert adds_nothing_to(_wrapped(base, target_modules="all-linear", lora_bias=True), base)


@torch.no_grad()
def test_only_the_active_adapters_must_add_nothing(base):
    """A second adapter with moved weights is never computed while inactive; active, it answers no."""
    policy = _wrapped(base)
    policy.add_adapter("other", LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    policy.eval()  # the new adapter's modules are made in training mode
    layer = policy.get_base_model().model.layers[0].self_attn.q_proj
    layer.lora_B["other"].weight.fill_(0.5)
    assert adds_nothing_to(policy, base)
    policy.base_model.set_adapter(["default", "other"])
    policy.eval()
    assert not adds_nothing_to(policy, base)


@torch.no_grad()
def test_a_moved_adapter_or_base_weight_or_another_base_or_configuration_answers_no(base):
    policy = _wrapped(base)
    layer = policy.get_base_model().model.layers[0].self_attn.v_proj
    layer.lora_B["default"].weight[-1, -1] = 1e-30  # the last adapter weight of the last layer
    assert not adds_nothing_to(policy, base)
    with policy.disable_adapter():
        assert adds_nothing_to(policy, base)  # the base alone is still the reference
    policy = _wrapped(base)
    policy.get_base_model().lm_head.weight[0, 0] += 1.0  # a base weight outside any LoRA layer
    assert not adds_nothing_to(policy, base)
    policy = _wrapped(base)
    layer = policy.get_base_model().model.layers[0].self_attn.q_proj
    layer.base_layer.weight[0, 0] += 1.0  # a base weight inside a LoRA layer
    assert not adds_nothing_to(policy, base)
    policy = _wrapped(base, lora_bias=True)
    policy.get_base_model().model.layers[0].self_attn.v_proj.lora_B["default"].bias[0] = 1e-30
    assert not adds_nothing_to(policy, base)
    other = tiny_chat_model(chat_tokenizer(), seed=1).eval()
    assert not adds_nothing_to(_wrapped(base), other)
    swapped = copy.deepcopy(base)
    swapped.model.layers[0].mlp.act_fn = torch.nn.GELU().eval()  # the same tensors, another module
    assert not adds_nothing_to(_wrapped(base), swapped)
    configured = copy.deepcopy(base)
    configured.config.attention_dropout = 0.5  # equal weights, another configuration
    assert not adds_nothing_to(_wrapped(base), configured)


@torch.no_grad()
def test_what_it_cannot_vouch_for_answers_no(base):
    """A module in training mode (its dropout draws), DoRA, a ``modules_to_save`` copy, a LoRA layer of
    another type (an embedding), an adapter in another dtype than its base layer (PEFT casts the layer's
    input to it), a merged layer, a non-finite scaling or ``lora_A``, or a model that is no PEFT wrapper."""
    policy = _wrapped(base, lora_dropout=0.1)
    policy.train()
    assert not adds_nothing_to(policy, base)
    assert not adds_nothing_to(_wrapped(base), copy.deepcopy(base).train())
    assert not adds_nothing_to(_wrapped(base, use_dora=True), base)
    assert not adds_nothing_to(_wrapped(base, modules_to_save=["lm_head"]), base)
    assert not adds_nothing_to(_wrapped(base, target_modules=["embed_tokens", "q_proj"]), base)
    policy = _wrapped(base)
    policy.get_base_model().model.layers[0].self_attn.q_proj.lora_A["default"].half()
    assert not adds_nothing_to(policy, base)
    policy = _wrapped(base)
    policy.get_base_model().model.layers[0].self_attn.q_proj.merge()  # adds zeros to the base weight
    assert not adds_nothing_to(policy, base)
    policy = _wrapped(base)
    policy.get_base_model().model.layers[0].self_attn.q_proj.scaling["default"] = float("inf")
    assert not adds_nothing_to(policy, base)
    policy = _wrapped(base)
    policy.get_base_model().model.layers[0].self_attn.v_proj.lora_A["default"].weight[0, 0] = float("inf")
    assert not adds_nothing_to(policy, base)
    assert not adds_nothing_to(copy.deepcopy(base), base)
