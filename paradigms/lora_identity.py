"""Whether a PEFT LoRA model computes exactly as a plain model: its base is that model and every active
adapter adds exactly zero.

A LoRA layer (``peft.tuners.lora.Linear``, not merged, adapters on) returns
``base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``. PEFT starts ``lora_B`` at zeros, so until an
``adapter`` or ``hybrid`` run's first update each LoRA layer adds a tensor of zeros to what its base layer
computes, and ``y + 0`` is ``y`` (an exact ``-0.0`` in ``y`` may become ``+0.0``, which no later operation
of a causal LM's forward pass turns into another value). The policy then computes the logits its base
computes, and the KL between the two is exactly 0: a run's first evaluation logs 0.0 from the passes.

One condition cannot be checked without running the layer: ``lora_A(x)`` must be finite, since 0 times
an infinity is NaN. Each of its values is at most ``in_features * max|lora_A| * max|x|``, and PEFT
starts ``lora_A`` Kaiming-uniform, every weight at most ``1/sqrt(in_features)``: at that start an overflow
needs an activation above float32's 3.4e38 / sqrt(in_features), about 1e37 for SmolLM2's layers.
The adapter must hold the base layer's dtype, so that PEFT casts no activation (an fp16 adapter on an fp32
base turns any activation above 65,504 into an infinity).

:func:`adds_nothing_to` checks the rest and nothing weaker; anything it does not know answers "no"
(another PEFT method or LoRA layer type, DoRA or another LoRA variant, a merged layer, a wrapper such as
``modules_to_save``, another module class anywhere, a module in training mode, whose dropout draws).
It speaks of a plain forward call: PEFT's ``adapter_names`` argument (a mixed batch) routes elsewhere.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

import torch

from paradigms.answer_cache import model_descriptions, named_tensors, same_tensors


def adds_nothing_to(model: torch.nn.Module, reference: torch.nn.Module) -> bool:
    """Whether ``model`` is a PEFT LoRA wrapper that computes exactly what ``reference`` computes: both in
    evaluation mode; every LoRA layer an unmerged plain ``lora.Linear`` whose active adapters have an
    all-zero ``lora_B`` (and bias), a finite ``lora_A`` of the base layer's dtype and a finite scaling;
    and the wrapped model, its LoRA layers read as their base layers, equal to ``reference`` in class,
    configuration, generation defaults, every module's name and class, and every parameter and buffer
    (name, dtype, device, shape and bytes). Cheapest and likeliest differences first: a trained adapter
    answers "no" at its first nonzero ``lora_B``; a "yes" reads every tensor of both once."""
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
    modules = list(inner.named_modules(remove_duplicate=False))
    layers = {name: module for name, module in modules if isinstance(module, LoraLayer)}
    if not all(type(layer) is LoraLinear and _adds_zero(layer) for layer in layers.values()):
        return False
    if list(model_descriptions(inner)) != list(model_descriptions(reference)):
        return False
    if _classes(_as_plain(modules, layers)) != _classes(reference.named_modules(remove_duplicate=False)):
        return False
    return same_tensors(_as_plain(named_tensors(inner), layers), named_tensors(reference))


def _classes(named: Iterable[tuple[str, torch.nn.Module]]) -> list[tuple[str, str]]:
    """Each module's name and class."""
    return [(name, type(module).__qualname__) for name, module in named]


def _adds_zero(layer) -> bool:
    """Whether a ``lora.Linear`` returns exactly what its base layer returns, never merged (for a finite
    ``lora_A(x)``: see the module's docstring)."""
    if layer.merged:
        return False  # switching adapters off unmerges first, changing the base weights compared after
    if layer.disable_adapters:
        return True  # it returns ``base_layer(x)``
    dtype = layer.get_base_layer().weight.dtype
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue  # this adapter has no weights on this layer: the layer skips it
        if name in layer.lora_variant:
            return False  # DoRA and the other variants compute otherwise
        a, b = layer.lora_A[name], layer.lora_B[name]
        if type(a) is not torch.nn.Linear or type(b) is not torch.nn.Linear or a.weight.dtype != dtype:
            return False
        if bool(b.weight.any()) or (b.bias is not None and bool(b.bias.any())):
            return False  # a trained adapter: the likeliest "no", checked before reading lora_A
        if not math.isfinite(layer.scaling[name]) or not bool(torch.isfinite(a.weight).all()):
            return False
        if a.bias is not None and not bool(torch.isfinite(a.bias).all()):
            return False
    return True


def _as_plain(named: Iterable[tuple], layers: dict) -> list[tuple]:
    """``named`` ((name, module) or (kind, name, tensor) pairs of the wrapped model) under the names the
    plain model gives them: a LoRA layer's ``<layer>.base_layer[.<rest>]`` as ``<layer>[.<rest>]``; the LoRA
    layer itself and its adapters' own modules and tensors (``lora_A``, ``lora_B``, ...) left out."""
    plain = []
    for entry in named:
        *kind, name, value = entry
        layer, rest = _split_at_layer(name, layers)
        if layer is not None:
            if rest != "base_layer" and not rest.startswith("base_layer."):
                continue  # the LoRA layer itself, or one of its adapters' modules or tensors
            name = layer + rest[len("base_layer") :]
        plain.append((*kind, name, value))
    return plain


def _split_at_layer(name: str, layers: dict) -> tuple[str | None, str]:
    """(the LoRA layer ``name`` lies in or is, what follows it) or (None, name); by dotted prefixes."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in layers:
            return prefix, ".".join(parts[end:])
    return None, name
