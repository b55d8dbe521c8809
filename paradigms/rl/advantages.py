"""Advantage estimators shared by the RL algorithms: pure tensor functions, shapes in comments.

Rewards are terminal: one scalar per response (episode). ``B`` is the number of responses,
``G`` the group size (responses to the same query), ``T`` the padded number of agent tokens.
"""

from __future__ import annotations

import torch


def group_relative(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantage: each reward minus its group's mean, divided by the group's std.

    ``rewards``: (Q, G), one row per query. Returns (Q, G). With ``scale=False`` only the mean
    is removed (Dr. GRPO). The std is the unbiased one, as in TRL.
    """
    mean = rewards.mean(dim=1, keepdim=True)  # (Q, 1)
    centered = rewards - mean  # (Q, G)
    if not scale:
        return centered
    std = rewards.std(dim=1, keepdim=True)  # (Q, 1)
    return centered / (std + eps)


def leave_one_out(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE Leave-One-Out (RLOO) advantage: each reward minus the mean of the others.

    ``rewards``: (Q, G) with G >= 2. Returns (Q, G): ``r_i - (sum_j r_j - r_i) / (G - 1)``.
    """
    groups = rewards.shape[1]
    if groups < 2:
        raise ValueError("leave-one-out needs at least 2 responses per query (group_size >= 2)")
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (groups - 1)  # (Q, G)
    return rewards - others


def terminal_rewards(final: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards that are zero except ``final`` at each row's last unmasked token.

    ``final``: (B,); ``mask``: (B, T) of 0/1 (1 = agent token). Returns (B, T).
    """
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, T)
    last = (positions * mask).argmax(dim=1)  # (B,) index of the last agent token
    rewards = torch.zeros_like(mask, dtype=final.dtype)  # (B, T)
    has_tokens = mask.sum(dim=1) > 0  # (B,)
    rewards[has_tokens, last[has_tokens]] = final[has_tokens]
    return rewards


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) over each row's agent tokens; returns ``(advantages, returns)``.

    ``rewards``, ``values``, ``mask``: (B, T). Masked positions (tool output, padding) are skipped
    as if absent: the next value of an agent token is the value of the next *agent* token, and
    0 after the last one (the episode ends). ``returns = advantages + values``. Both (B, T), zero
    where the mask is zero.
    """
    batch, steps = rewards.shape
    advantages = torch.zeros_like(rewards)  # (B, T)
    next_value = torch.zeros(batch, dtype=rewards.dtype, device=rewards.device)  # (B,)
    running = torch.zeros_like(next_value)  # (B,)
    for t in reversed(range(steps)):
        live = mask[:, t].to(rewards.dtype)  # (B,)
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        step_advantage = delta + gamma * lam * running  # (B,)
        running = live * step_advantage + (1 - live) * running
        next_value = live * values[:, t] + (1 - live) * next_value
        advantages[:, t] = live * step_advantage
    returns = (advantages + values) * mask
    return advantages, returns


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalize ``values`` (B, T) to zero mean and unit variance over the masked positions."""
    count = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / count
    variance = (((values - mean) * mask) ** 2).sum() / count
    return (values - mean) * torch.rsqrt(variance + eps) * mask
