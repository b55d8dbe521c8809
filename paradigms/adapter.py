"""``adapter``: the base is frozen; a PEFT LoRA adapter is trainable and holds the user."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from paradigms.rl import batching
from paradigms.settings import INIT_WEIGHTS, AdapterSettings
from paradigms.weights import WeightLearning


class Adapter(WeightLearning):
    Settings = AdapterSettings
    artifact_name = "adapter"

    def make_policy(self, model: torch.nn.Module) -> torch.nn.Module:
        s = self.settings
        config = LoraConfig(
            r=s.rank,
            lora_alpha=s.alpha,
            lora_dropout=s.dropout,
            target_modules=s.target_modules,
            task_type="CAUSAL_LM",
        )
        policy = get_peft_model(model, config)
        if s.init is not None:
            load_adapter_start(policy, Path(s.init))
        return policy

    @torch.no_grad()
    def reference_logits(self, batch: batching.EpisodeBatch) -> torch.Tensor:
        with self.policy.disable_adapter():
            return batching.forward(self.policy, batch).logits


def load_adapter_start(policy, directory: Path) -> None:
    """Copy a saved adapter's weights (``directory/adapter_model.safetensors``) into ``policy``'s LoRA.

    Raises ``ValueError`` naming the first LoRA weight the file lacks or shapes differently.
    """
    saved = load_file(str(directory / INIT_WEIGHTS))
    result = set_peft_model_state_dict(policy, saved)
    wanted = {n for n, p in policy.named_parameters() if p.requires_grad}
    missing = sorted(n for n in getattr(result, "missing_keys", []) if n in wanted)
    if missing:
        raise ValueError(
            f"paradigm.init: {directory} has no weight for {missing[0]}; was it saved for this base?"
        )
