"""``full_ft``: every weight of the backbone is trainable; the lesson lives in the weights."""

from __future__ import annotations

from typing import Literal

import torch

from paradigms.base import PARADIGMS, ParadigmSettings
from paradigms.rl import batching
from paradigms.weights import WeightLearning


class FullFinetuneSettings(ParadigmSettings):
    name: Literal["full_ft"] = "full_ft"


@PARADIGMS.register("full_ft")
class FullFinetune(WeightLearning):
    Settings = FullFinetuneSettings

    def make_policy(self, model: torch.nn.Module) -> torch.nn.Module:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    @torch.no_grad()
    def reference_logits(self, batch: batching.EpisodeBatch) -> torch.Tensor:
        return batching.forward(self.backbone.reference(), batch).logits
