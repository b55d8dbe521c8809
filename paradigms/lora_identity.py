"""Whether a PEFT LoRA model computes exactly as a plain model: its base is that model and every active
adapter adds exactly zero.

A LoRA layer (``peft.tuners.lora.Linear``, neither merged nor switched off) returns
``base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``. PEFT starts ``lora_B`` at zeros, so until an
``adapter`` or ``hybrid`` run's first update each LoRA layer adds a tensor of zeros to what its base layer
computes (for finite ``x``, ``lora_A`` and ``scaling``: 0 times a finite number is 0), and ``y + 0`` is
``y`` bit for bit; only an exact zero in ``y`` may change its sign, which no later operation of a causal
LM's forward pass turns into another value. The policy then computes the logits its base computes, and
the KL between the two is exactly 0 (a run's first evaluation logs 0.0 from the forward passes).

:func:`adds_nothing_to` checks the conditions of that argument and nothing weaker; anything it does not
know answers "no" (another PEFT method or LoRA layer type, DoRA or another LoRA variant, a wrapper such as
``modules_to_save``, a module in training mode, whose dropout draws).
"""

from __future__ import annotations

import math
import sys

import torch

from paradigms.answer_cache import model_descriptions, named_tensors, same_tensors


def adds_nothing_to(model: torch.nn.Module, reference: torch.nn.Module) -> bool:
    """Whether ``model`` is a PEFT LoRA wrapper that computes exactly what ``reference`` computes: both in
    evaluation mode; every LoRA layer a plain ``lora.Linear`` whose active adapters have an all-zero
    ``lora_B`` (and bias), a finite ``lora_A`` and a finite scaling; and the wrapped model, without its LoRA
    weights, equal to ``reference`` in class, configuration, generation defaults and every parameter and
    buffer (name, dtype, device, shape and bytes). Cheapest and likeliest differences first: a trained
    adapter answers "no" at its first nonzero ``lora_B``; a "yes" reads every tensor of both once."""
    if "peft" not in sys.modules:  # nothing is a PEFT model before peft is imported
        return False
    from peft import PeftModel
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer, LoraModel

    if not isinstance(model, PeftModel) or type(model.base_model) is not LoraModel:
        return False
    if any(m.training for m in model.modules()) or any(m.training for m in reference.modules()):
        return False
    inner = model.get_base_model()
    layers = {name: module for name, module in inner.named_modules() if isinstance(module, LoraLayer)}
    if not all(type(layer) is LoraLinear and _adds_zero(layer) for layer in layers.values()):
        return False
    if list(model_descriptions(inner)) != list(model_descriptions(reference)):
        return False
    return same_tensors(_without_lora(named_tensors(inner), layers), named_tensors(reference))


def _adds_zero(layer) -> bool:
    """Whether a ``lora.Linear`` layer returns exactly what its base layer returns, for finite input."""
    if layer.disable_adapters or layer.merged:
        return True  # it returns ``base_layer(x)``: a merged update is in the base weights compared after
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue  # this adapter has no weights on this layer: the layer skips it
        if name in layer.lora_variant:
            return False  # DoRA and the other variants compute otherwise
        a, b = layer.lora_A[name], layer.lora_B[name]
        if type(a) is not torch.nn.Linear or type(b) is not torch.nn.Linear:
            return False
        if not math.isfinite(layer.scaling[name]) or not bool(torch.isfinite(a.weight).all()):
            return False
        if bool(b.weight.any()) or (b.bias is not None and bool(b.bias.any())):
            return False
        if a.bias is not None and not bool(torch.isfinite(a.bias).all()):
            return False
    return True


Named = list[tuple[str, str, torch.Tensor]]  # (kind, name, tensor), as answer_cache.named_tensors gives them


def _without_lora(named: Named, layers: dict) -> Named:
    """The wrapped model's tensors under the names the plain model gives them: a LoRA layer's
    ``<layer>.base_layer.<tensor>`` as ``<layer>.<tensor>``, its adapters' own tensors left out."""
    kept = []
    for kind, name, tensor in named:
        layer = next((p for p in layers if name.startswith(p + ".")), None)
        if layer is not None:
            rest = name[len(layer) + 1 :]
            if not rest.startswith("base_layer."):
                continue  # lora_A, lora_B (and any other adapter tensor) of this layer
            name = f"{layer}.{rest[len('base_layer.') :]}"
        kept.append((kind, name, tensor))
    return kept
