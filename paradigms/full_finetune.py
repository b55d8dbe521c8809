"""``full_ft``: every weight of the backbone is trainable; the lesson lives in the weights."""

from __future__ import annotations

import torch

from paradigms.rl import batching
from paradigms.settings import FullFinetuneSettings
from paradigms.weights import WeightLearning


class FullFinetune(WeightLearning):
    Settings = FullFinetuneSettings

    def make_policy(self, model: torch.nn.Module) -> torch.nn.Module:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    @torch.no_grad()
    def reference_logits(self, batch: batching.EpisodeBatch) -> torch.Tensor:
        return batching.forward(self.backbone.reference(), batch).logits
