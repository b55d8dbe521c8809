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

The value head has its own learning rate (``value_learning_rate``, as separate actor and critic
learning rates in RLHF PPO): it starts at zero and must learn the return's scale (~1.2 here) within
tens of updates, whatever step size the policy tolerates. At the policy's own 1e-4 it had not after
600 feedback events (value loss 0.54 -> 0.31); until it has, every advantage is a positive
``lambda^(T - t)``-decayed reward, and whitening makes each response's opening tokens negative
(mean first-token advantage -0.78) whatever the response earned, which wore away general
accuracy late in runs (README, "PPO"). The update logs CleanRL's diagnostics beside its losses:
``train/approx_kl`` and ``train/clip_fraction`` (how far the steps before the last epoch moved the
policy: 0 with ``epochs: 1``), ``train/value_explained_variance`` (against the Monte-Carlo
return), ``train/advantage_first_token`` and ``train/advantage_query_share`` (see their functions).
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


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> float:
    """KL(old || new) over agent tokens by ``(r - 1) - log r`` (CleanRL's estimate); all (B, C)."""
    log_ratio = logp - old_logp  # (B, C)
    return float(batching.masked_mean(torch.expm1(log_ratio) - log_ratio, mask))


def clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor, clip: float) -> float:
    """Share of agent tokens whose ratio left ``[1 - clip, 1 + clip]``; all (B, C)."""
    outside = ((torch.exp(logp - old_logp) - 1).abs() > clip).float()  # (B, C)
    return float(batching.masked_mean(outside, mask))


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float | None:
    """``1 - Var(R - V) / Var(R)`` over agent tokens (1: perfect, 0: no better than a constant);
    None when the returns (nearly) do not vary."""
    live = mask.bool()
    target, error = returns[live], (returns - values)[live]
    variance = target.var(unbiased=False) if target.numel() > 1 else torch.tensor(0.0)
    if float(variance) < 1e-6:  # (near-)equal returns: nothing to explain
        return None
    return float(1 - error.var(unbiased=False) / variance)


def first_token_advantage(advantages: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean advantage at each response's first agent token; (B, C) in.

    An estimator that credits responses, not positions, averages ~0 there (the batch is whitened
    to mean 0); with a value that has not learned the return's scale, GAE's ``lambda^(T - t)``
    decay makes early tokens' advantages small and, after whitening, negative in every response.
    """
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, C)
    first = torch.where(mask > 0, positions, mask.shape[1]).argmin(dim=1)  # (B,)
    has_tokens = mask.sum(dim=1) > 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has_tokens]
    return float(advantages[rows, first[has_tokens]].mean()) if len(rows) else 0.0


def query_offset_share(advantages: torch.Tensor, mask: torch.Tensor, group: int) -> float | None:
    """Share of the responses' advantage variance that is between queries, not within them.

    ``advantages``, ``mask``: (B, C) with B = Q x ``group`` responses, query-major. Each response's
    advantage is its tokens' mean. 0: every query's responses average out (the baseline knows how
    hard each query is, as a leave-one-out baseline does exactly); 1: the advantages only say which
    queries were easy. None when the advantages do not vary.
    """
    per_response = (advantages * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B,)
    if per_response.numel() % group or per_response.var(unbiased=False) == 0:
        return None
    per_query = per_response.view(-1, group).mean(1, keepdim=True).expand(-1, group).reshape(-1)  # (B,)
    return float(per_query.var(unbiased=False) / per_response.var(unbiased=False))


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

    def parameter_groups(self) -> list[dict]:
        return [
            {"params": list(self.host.parameters())},
            {"params": list(self.value_head.parameters()), "lr": self.settings.value_learning_rate},
        ]

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
        metrics["train/approx_kl"] = approx_kl(logp.detach(), old_logp, batch.mask)
        metrics["train/clip_fraction"] = clip_fraction(logp.detach(), old_logp, batch.mask, s.clip_range)
        # against the Monte-Carlo return (what the value estimates), not the value's own bootstrap
        outcome, _ = generalized_advantages(rewards, torch.zeros_like(old_values), batch.mask, s.gamma, 1.0)
        explained = explained_variance(old_values, outcome, batch.mask)
        if explained is not None:
            metrics["train/value_explained_variance"] = explained
        metrics["train/advantage_first_token"] = first_token_advantage(advantages, batch.mask)
        offset = query_offset_share(advantages, batch.mask, s.group_size)
        if offset is not None:
            metrics["train/advantage_query_share"] = offset
        if ref_logp is not None:
            metrics["train/kl"] = float(batching.masked_mean(batching.kl_k3(old_logp, ref_logp), batch.mask))
        self.count_update(batch, passes=s.epochs + 1)
        return metrics
