"""``adapter``: the base is frozen; a PEFT LoRA adapter is trainable and holds the user."""

from __future__ import annotations

from typing import Literal

import torch
from peft import LoraConfig, get_peft_model
from pydantic import Field

from paradigms.base import PARADIGMS, ParadigmSettings
from paradigms.rl import batching
from paradigms.weights import WeightLearning


class AdapterSettings(ParadigmSettings):
    name: Literal["adapter"] = "adapter"
    rank: int = Field(8, ge=1, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling alpha (the update is scaled by alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names to adapt, or 'all-linear' (every linear layer but the output head).",
    )


@PARADIGMS.register("adapter")
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
        return get_peft_model(model, config)

    @torch.no_grad()
    def reference_logits(self, batch: batching.EpisodeBatch) -> torch.Tensor:
        with self.policy.disable_adapter():
            return batching.forward(self.policy, batch).logits
