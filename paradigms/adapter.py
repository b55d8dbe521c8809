"""``adapter``: the base is frozen; a PEFT LoRA adapter is trainable and holds the user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from pydantic import Field, ValidationInfo, field_validator
from safetensors.torch import load_file

from paradigms.base import PARADIGMS, ParadigmSettings
from paradigms.rl import batching
from paradigms.weights import WeightLearning

INIT_WEIGHTS = "adapter_model.safetensors"


class AdapterSettings(ParadigmSettings):
    name: Literal["adapter"] = "adapter"
    rank: int = Field(8, ge=1, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling alpha (the update is scaled by alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names to adapt, or 'all-linear' (every linear layer but the output head).",
    )
    init: Path | None = Field(
        None,
        description="Start from a saved adapter (a directory with adapter_model.safetensors, e.g. "
        "written by harness meta-train) instead of LoRA's default start (B = 0).",
    )

    @field_validator("init")
    @classmethod
    def _init_fits(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        """The saved start must exist and fit an adapter of this rank and scaling."""
        if path is None:
            return path
        if not (Path(path) / INIT_WEIGHTS).is_file():
            raise ValueError(f"no {INIT_WEIGHTS} in {path}; pass a directory written by harness meta-train")
        config = Path(path) / "adapter_config.json"
        saved = json.loads(config.read_text()) if config.is_file() else {}
        for field, key in (("rank", "r"), ("alpha", "lora_alpha")):
            if key in saved and field in info.data and float(saved[key]) != float(info.data[field]):
                raise ValueError(
                    f"{path} was trained with {field} {saved[key]}; set paradigm.{field}={saved[key]}"
                )
        return path


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
