"""``reinforce``: REINFORCE with a leave-one-out baseline (RLOO), one on-policy step per batch.

Written here rather than taken from TRL: TRL's ``RLOOTrainer`` owns its data loop and has no
``rollout_func``, so it cannot generate through the harness's one rollout with the search tool
and env mask. The estimator is Ahmadian et al. (2024), "Back to Basics": for G responses to a
query, ``A_i = r_i - mean_{j != i} r_j``; the loss is ``-A_i * log pi(token)`` averaged over the
agent's tokens of the batch, plus an optional KL(policy || base) penalty (k3 estimate).
"""

from __future__ import annotations

import torch

from paradigms.rl import batching
from paradigms.rl.advantages import leave_one_out
from paradigms.rl.learner import Learner
from paradigms.rl.settings import ReinforceSettings
from paradigms.session import Interaction


def reinforce_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``-mean over agent tokens of A * log p``. ``logp``, ``mask``: (B, C); ``advantages``: (B,)."""
    return -batching.masked_mean(logp * advantages.unsqueeze(1), mask)


class Reinforce(Learner):
    Settings = ReinforceSettings
    min_group_size = 2

    def update(self, interaction: Interaction, events: int) -> dict[str, float]:
        group = self.settings.group_size
        rewards = torch.tensor(interaction.rewards, dtype=torch.float32).view(-1, group)  # (Q, G)
        advantages = leave_one_out(rewards).view(-1).to(self.host.device)  # (B,)
        batch = self.collate(interaction)
        logits = batching.forward(self.host.policy, batch).logits  # (B, L, V)
        logp = batching.token_logprobs(logits, batch)  # (B, C)
        loss = reinforce_loss(logp, advantages, batch.mask)
        metrics = {"train/policy_loss": loss.item()}
        if self.settings.kl_coef > 0:
            kl = batching.masked_mean(batching.kl_k3(logp, self.host.reference_logprobs(batch)), batch.mask)
            loss = loss + self.settings.kl_coef * kl
            metrics["train/kl"] = kl.item()
        loss = self.with_continual(loss, batch, metrics)
        metrics["train/grad_norm"] = self.step(loss, events)
        self.count_update(batch)
        return metrics
