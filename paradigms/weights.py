"""What ``full_ft`` and ``adapter`` share: a trainable policy, its learner, its reference, its costs.

The two paradigms differ only in ``make_policy`` (what is trainable); everything else, the
RL engine included (``paradigms/rl``), is this code.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from paradigms.algorithms import ALGORITHMS
from paradigms.base import Paradigm
from paradigms.rl import batching
from paradigms.rl.continual import Continual
from paradigms.rl.settings import ContinualSettings
from paradigms.session import Interaction, Session
from tasks.items import Item


class WeightLearning(Paradigm):
    """A paradigm that learns the user into weights with the config's algorithm."""

    #: its evaluation is a rollout with the policy and a KL to the base: it reads the weights, writes nothing
    evaluation_writes_no_state = True

    def __init__(self, settings, backbone, algorithm):
        super().__init__(settings, backbone, algorithm)
        self.base_parameters = backbone.parameter_count()
        self.policy = self.make_policy(backbone.model)
        self.policy.train()
        self.learner = ALGORITHMS[algorithm.name](algorithm, self)
        #: The sft learner of ``algorithm.warm_start_events`` (None without a warm start).
        self.warm_start = self._warm_start_learner(algorithm)

    def _warm_start_learner(self, algorithm):
        events = getattr(algorithm, "warm_start_events", 0)
        if not events:
            return None
        settings = ALGORITHMS.settings("sft")(
            learning_rate=algorithm.learning_rate,
            max_grad_norm=algorithm.max_grad_norm,
            weight_decay=algorithm.weight_decay,
            gradient_checkpointing=algorithm.gradient_checkpointing,
        )
        return ALGORITHMS["sft"](settings, self)

    @abstractmethod
    def make_policy(self, model: torch.nn.Module) -> torch.nn.Module:
        """The policy network with exactly the trainable parameters of this paradigm."""

    @abstractmethod
    def reference_logits(self, batch: batching.EpisodeBatch) -> torch.Tensor:
        """Logits (B, L, V) of the untouched base at every position of the batch (no gradient)."""

    def reference_logprobs(self, batch: batching.EpisodeBatch) -> torch.Tensor:
        """Log-probabilities (B, C) of the batch's completion tokens under the untouched base."""
        return batching.token_logprobs(self.reference_logits(batch), batch)

    def use_continual(self, settings: ContinualSettings) -> None:
        """Add the ``continual:`` mechanisms to every update of this paradigm's learner."""
        if settings.regularizer == "kl" or settings.distill > 0:
            self.backbone.reference()  # the copy of the base, made before any update
        self.learner.continual = Continual(settings, self)

    @property
    def model(self):
        return self.policy

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def hidden_size(self) -> int:
        config = self.backbone.model.config
        return getattr(config, "hidden_size", None) or config.n_embd

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.policy.parameters() if p.requires_grad]

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.learner.trainable())

    def update_flops_per_token(self) -> float:
        """Forward (2N) and backward through activations (2N) of the whole network, plus the weight
        gradients (2 x trainable) of what is trained: the usual 6N when everything is trainable."""
        return 4.0 * self.base_parameters + 2.0 * self.trainable_parameters()

    def train_flops(self) -> float:
        warm = self.warm_start.update_flops if self.warm_start is not None else 0.0
        return warm + self.learner.update_flops + self.learner.continual.flops

    def train(self, session: Session) -> None:
        """The warm start's imitation first (``algorithm.warm_start_events``), then the algorithm."""
        if self.warm_start is not None:
            self.warm_start.run(session, until=self.algorithm.warm_start_events)
        self.learner.run(session)

    # -- what the learner's loop asks its host (a hybrid paradigm answers differently) ------------
    def training_contexts(self, items: Sequence[Item]) -> list[list[str]] | None:
        """The notes in the prompts the learner answers ``items`` with while learning (None: no notes)."""
        return None

    def trains_on(self, interaction: Interaction) -> list[bool]:
        """Per response of ``interaction``: whether the weights learn from it (all of them here)."""
        return [True] * interaction.feedback_events

    def weight_feedback(self, interaction: Interaction) -> Interaction:
        """The feedback the weights learn from (here all of it; a hybrid may withhold corrections)."""
        return interaction

    def after_update(self, interaction: Interaction, events: int) -> None:
        """Called once per learning batch after the weight update, before the batch is recorded (``events``:
        feedback events consumed once it is); nothing here, a hybrid writes its memory."""

    def evaluation_state(self) -> dict[str, Any] | None:
        """The policy's every tensor (parameters and buffers: whatever an update or a trainer changed), its
        tool policy and the FLOP counters :meth:`train_flops` reads; the rest of what an evaluation reads
        (the base it is compared with, the settings) does not change while it trains."""
        return {
            "policy": self.policy.state_dict(),
            "tool_policy": self.tool_policy,
            "update_flops": self.learner.update_flops,
            "continual_flops": self.learner.continual.flops,
            "warm_start_flops": self.warm_start.update_flops if self.warm_start is not None else None,
        }

    def load_evaluation_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.policy.load_state_dict(state["policy"], strict=True)  # into the same tensors, exactly
        self.tool_policy = state["tool_policy"]
        self.learner.update_flops = state["update_flops"]
        self.learner.continual.flops = state["continual_flops"]
        if self.warm_start is not None:
            self.warm_start.update_flops = state["warm_start_flops"]

    def storage_bytes(self) -> int:
        """Bytes of what must be stored per user: the saved trainable state."""
        return sum(p.numel() * p.element_size() for p in self.learner.trainable())

    def save(self, directory: Path) -> list[Path]:
        target = Path(directory) / self.artifact_name
        self.policy.save_pretrained(target, safe_serialization=True)
        return sorted(Path(root) / name for root, _, names in os.walk(target) for name in names)

    artifact_name = "model"
