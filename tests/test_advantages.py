"""Advantage estimators against hand-computed values."""

import pytest
import torch

from paradigms.rl.advantages import (
    generalized_advantages,
    group_relative,
    leave_one_out,
    terminal_rewards,
    whiten,
)


def test_group_relative_centres_and_scales_each_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    # group 0: mean 0.5, unbiased std sqrt(1/3) = 0.57735 -> +-0.5 / 0.57735 = +-0.86603
    expected = torch.tensor([[0.86603, -0.86603, -0.86603, 0.86603], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(group_relative(rewards, eps=0.0 + 1e-12), expected, atol=1e-4)
    assert torch.allclose(group_relative(rewards, scale=False), rewards - rewards.mean(1, keepdim=True))


def test_leave_one_out_subtracts_the_mean_of_the_others():
    rewards = torch.tensor([[1.0, 0.0, 0.5]])
    # 1 - (0 + 0.5)/2 = 0.75 ; 0 - (1 + 0.5)/2 = -0.75 ; 0.5 - (1 + 0)/2 = 0
    assert torch.allclose(leave_one_out(rewards), torch.tensor([[0.75, -0.75, 0.0]]))
    with pytest.raises(ValueError, match="group_size >= 2"):
        leave_one_out(torch.tensor([[1.0]]))


def test_terminal_rewards_sit_on_the_last_agent_token():
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    rewards = terminal_rewards(torch.tensor([2.0, -1.0, 5.0]), mask)
    assert rewards.tolist() == [[0, 0, 0, 2.0, 0], [-1.0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_gae_skips_masked_tokens_and_matches_a_hand_computation():
    # one episode: agent tokens at t=0, 1, 3 (t=2 is tool output), terminal reward 1 at t=3
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 9.0, 0.2]])  # the value at the masked step must be ignored
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    gamma, lam = 0.9, 0.8
    # t=3: delta = 1 + 0 - 0.2 = 0.8 ; A3 = 0.8
    # t=1: delta = 0 + 0.9*0.2 - 0.4 = -0.22 ; A1 = -0.22 + 0.72*0.8 = 0.356
    # t=0: delta = 0 + 0.9*0.4 - 0.5 = -0.14 ; A0 = -0.14 + 0.72*0.356 = 0.11632
    advantages, returns = generalized_advantages(rewards, values, mask, gamma, lam)
    assert torch.allclose(advantages, torch.tensor([[0.11632, 0.356, 0.0, 0.8]]), atol=1e-6)
    assert torch.allclose(returns, torch.tensor([[0.61632, 0.756, 0.0, 1.0]]), atol=1e-6)


def test_gae_with_lambda_one_and_gamma_one_is_return_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 3.0]])
    values = torch.tensor([[1.0, 2.0, 0.5]])
    advantages, returns = generalized_advantages(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    assert torch.allclose(returns, torch.tensor([[3.0, 3.0, 3.0]]))
    assert torch.allclose(advantages, torch.tensor([[2.0, 1.0, 2.5]]))


def test_whiten_uses_only_masked_positions():
    values = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # mean 2, variance 1 over the two live positions
    assert torch.allclose(whiten(values, mask), torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-6)
