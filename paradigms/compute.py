"""The one FLOP convention of the compute ledger (``cost/inference_flops``, ``cost/train_flops``).

A forward pass of a dense transformer costs about 2 FLOPs per parameter per token it processes
(Kaplan et al. 2020, "Scaling Laws for Neural Language Models"); a generated token, read once
through the key-value cache, costs the same. Updates count forward, backward and weight gradients
(``paradigms.weights.WeightLearning.update_flops_per_token``).
"""

from __future__ import annotations

import torch


def forward_flops(parameters: int | float, tokens: int | float) -> float:
    """FLOPs of a forward pass of a ``parameters``-parameter model over ``tokens`` token positions."""
    return 2.0 * float(parameters) * float(tokens)


def parameter_count(model: torch.nn.Module) -> int:
    """Every parameter of ``model`` (trainable or not): what a forward pass multiplies by."""
    return sum(p.numel() for p in model.parameters())
