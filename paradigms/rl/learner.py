"""The RL engine shared by ``full_ft`` and ``adapter``: the online loop and what every learner needs.

The loop consumes the session's stream in order (no shuffling: drift depends on order). Each
step answers ``task.batch_size`` queries ``group_size`` times through the shared rollout and
scorer (``session.interact``), lets the algorithm update the trainable parameters, and reports
the batch with the update's metrics (``session.record``), which is where the runner evaluates.
The step axis is feedback events throughout. A non-finite loss stops the run with ``Diverged``.
Every algorithm passes its loss through ``with_continual`` before stepping, which adds the
``continual:`` section's replay, regularizer and distillation terms (``paradigms.rl.continual``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from paradigms.rl import batching
from paradigms.rl.continual import Continual
from paradigms.rl.settings import ContinualSettings, RLSettings
from paradigms.session import Diverged, Interaction, Session


class Learner(ABC):
    """One algorithm bound to one paradigm's trainable policy.

    ``host`` is the paradigm (``paradigms.weights.WeightLearning``): it provides ``policy``,
    ``tokenizer``, ``reference_logprobs`` and ``parameters()`` (what may be trained).
    """

    Settings: ClassVar[type[RLSettings]]
    #: Smallest group size the algorithm's estimator works with.
    min_group_size: ClassVar[int] = 1

    def __init__(self, settings: RLSettings, host):
        if settings.group_size < self.min_group_size:
            raise ValueError(
                f"algorithm.group_size must be at least {self.min_group_size} for {settings.name}; raise it"
            )
        self.settings, self.host = settings, host
        if settings.gradient_checkpointing:
            host.policy.gradient_checkpointing_enable()
        self.update_flops = 0.0
        #: Replay, regularizer and distillation terms (``continual:``); inactive unless configured.
        self.continual = Continual(ContinualSettings(), host)
        self._optimizer: torch.optim.Optimizer | None = None

    # -- shared helpers --------------------------------------------------------------------------
    def trainable(self) -> list[torch.nn.Parameter]:
        """Parameters this learner updates (the paradigm's, plus e.g. a value head)."""
        return list(self.host.parameters())

    def parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups: one group at ``learning_rate`` unless a learner needs more."""
        return [{"params": self.trainable()}]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = torch.optim.AdamW(
                self.parameter_groups(),
                lr=self.settings.learning_rate,
                weight_decay=self.settings.weight_decay,
            )
        return self._optimizer

    def step(self, loss: torch.Tensor, events: int) -> float:
        """Backpropagate ``loss``, clip, and step; raises ``Diverged`` on a non-finite loss or gradient."""
        if not torch.isfinite(loss):
            raise Diverged(
                f"loss became {loss.item()} after {events} feedback events; lower "
                f"algorithm.learning_rate or the reward weights"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.trainable(), self.settings.max_grad_norm)
        if not math.isfinite(float(norm)):
            raise Diverged(
                f"gradient norm became {float(norm)} after {events} feedback events; lower "
                f"algorithm.learning_rate"
            )
        self.optimizer.step()
        return float(norm)

    def count_update(self, batch: batching.EpisodeBatch, passes: int = 1) -> None:
        """Add the FLOPs of ``passes`` forward+backward passes over ``batch`` (see ``host.update_flops``)."""
        self.update_flops += passes * self.host.update_flops_per_token() * batch.tokens

    def with_continual(
        self, loss: torch.Tensor, batch: batching.EpisodeBatch, metrics: dict[str, float]
    ) -> torch.Tensor:
        """``loss`` plus the continual terms of the update on ``batch`` (their values into ``metrics``)."""
        total, terms = self.continual.loss(loss, batch)
        metrics.update(terms)
        return total

    def collate(self, interaction: Interaction) -> batching.EpisodeBatch:
        return batching.collate(interaction.episodes, self.host.tokenizer.pad_token_id, self.host.device)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, session: Session, until: int | None = None) -> None:
        """Consume the session: answer, score, update, report, until the budget is spent (or, given
        ``until``, until that many feedback events are consumed: a warm start's share).

        The host decides the notes in the prompts (``training_contexts``), which responses and which
        feedback the update sees (``trains_on``, ``weight_feedback``; whole groups) and what else it
        learns after the update (``after_update``); ``full_ft`` and ``adapter`` pass everything through.
        """
        group = self.settings.group_size
        self.continual.start(session.user.seed)
        while not session.done and (until is None or session.events < until):
            left = session.remaining if until is None else min(session.remaining, until - session.events)
            queries = max(1, min(session.batch_size, left // group))
            items = session.next_items(queries)
            contexts = self.host.training_contexts(items)
            interaction = session.interact(
                self.host.policy, self.host.tokenizer, items, contexts, group_size=group
            )
            events = session.events + interaction.feedback_events
            trained = self.host.weight_feedback(interaction).select(self.host.trains_on(interaction))
            if trained.feedback_events % group:
                raise ValueError("a paradigm must route whole groups of responses to its weights")
            metrics = self.update(trained, events) if trained.feedback_events else {}
            self.continual.observe(trained.episodes, trained.components)
            self.host.after_update(interaction, events)
            session.record(interaction, metrics)

    @abstractmethod
    def update(self, interaction: Interaction, events: int) -> dict[str, float]:
        """Learn from one scored batch; return the update's metrics (``train/...``)."""
