"""``ppo``: clipped-surrogate PPO with a learned value head and GAE over the agent's tokens.

TRL 1.16 no longer ships a PPO trainer, so this one is ours, in one file (CleanRL style), on the
same rollout, reward and env-mask path as every other algorithm. Per batch:

1. score the responses (the shared scorer), then, without gradients, record the policy's
   log-probabilities, the value head's estimates and (when ``kl_coef > 0``) the base's
   log-probabilities of every agent token;
2. per-token rewards: the response's reward on its last agent token, minus
   ``kl_coef * (log pi - log pi_base)`` on every agent token (the RLHF shaping);
3. advantages and returns by GAE(gamma, lambda) over agent tokens only (tool output is skipped
   as if absent), advantages whitened over the batch;
4. ``epochs`` passes of: clipped policy surrogate + ``value_coef`` x clipped value loss.
"""

from __future__ import annotations

import torch

from paradigms.rl import batching
from paradigms.rl.advantages import generalized_advantages, terminal_rewards, whiten
from paradigms.rl.learner import Learner
from paradigms.rl.settings import PPOSettings
from paradigms.session import Interaction


def policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """Clipped surrogate ``-min(r A, clip(r, 1-e, 1+e) A)`` averaged over agent tokens; all (B, C)."""
    ratio = torch.exp(logp - old_logp)  # (B, C)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    return -batching.masked_mean(torch.minimum(unclipped, clipped), mask)


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """``0.5 * max((v - R)^2, (clip(v, v_old +- e) - R)^2)`` averaged over agent tokens; all (B, C)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    worst = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * batching.masked_mean(worst, mask)


def shaped_rewards(
    final: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor | None, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards (B, C): ``final`` (B,) on the last agent token, minus the KL shaping."""
    rewards = terminal_rewards(final, mask)
    if ref_logp is not None and kl_coef > 0:
        rewards = rewards - kl_coef * (logp - ref_logp) * mask
    return rewards


class ValueHead(torch.nn.Module):
    """A linear value estimate on the policy's last hidden state: (B, L, H) -> (B, L)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


class PPO(Learner):
    Settings = PPOSettings

    def __init__(self, settings: PPOSettings, host):
        super().__init__(settings, host)
        self.value_head = ValueHead(host.hidden_size).to(host.device)

    def trainable(self) -> list[torch.nn.Parameter]:
        return [*self.host.parameters(), *self.value_head.parameters()]

    def _evaluate(self, batch: batching.EpisodeBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities, values) of every completion token, both (B, C)."""
        output = batching.forward(self.host.policy, batch, hidden=True)
        logp = batching.token_logprobs(output.logits, batch)
        values = batching.gather_completion(self.value_head(output.hidden_states[-1]), batch)
        return logp, values

    def update(self, interaction: Interaction, events: int) -> dict[str, float]:
        s = self.settings
        batch = self.collate(interaction)
        with torch.no_grad():
            old_logp, old_values = self._evaluate(batch)
            ref_logp = self.host.reference_logprobs(batch) if s.kl_coef > 0 else None
            final = torch.tensor(interaction.rewards, dtype=torch.float32, device=batch.mask.device)
            rewards = shaped_rewards(final, old_logp, ref_logp, batch.mask, s.kl_coef)
            advantages, returns = generalized_advantages(rewards, old_values, batch.mask, s.gamma, s.lam)
            if s.whiten_advantages:
                advantages = whiten(advantages, batch.mask)
        metrics: dict[str, float] = {}
        for _ in range(s.epochs):
            logp, values = self._evaluate(batch)
            pg = policy_loss(logp, old_logp, advantages, batch.mask, s.clip_range)
            vf = value_loss(values, old_values, returns, batch.mask, s.value_clip_range)
            loss = self.with_continual(pg + s.value_coef * vf, batch, metrics)
            metrics["train/grad_norm"] = self.step(loss, events)
            metrics["train/policy_loss"], metrics["train/value_loss"] = pg.item(), vf.item()
        if ref_logp is not None:
            metrics["train/kl"] = float(batching.masked_mean(batching.kl_k3(old_logp, ref_logp), batch.mask))
        self.count_update(batch, passes=s.epochs + 1)
        return metrics
