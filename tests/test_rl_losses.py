"""PPO, REINFORCE and SFT pieces against hand-computed values."""

import math

import torch

from paradigms.agent import Episode
from paradigms.rl import batching
from paradigms.rl.ppo import (
    approx_kl,
    clip_fraction,
    explained_variance,
    first_token_advantage,
    policy_loss,
    query_offset_share,
    shaped_rewards,
    value_loss,
)
from paradigms.rl.reinforce import reinforce_loss
from paradigms.rl.sft import corrected_target
from tasks.items import Item, Query
from tasks.protocols import PROTOCOLS, Statement


def test_ppo_policy_loss_clips_the_ratio():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    advantages = torch.tensor([[1.0, 1.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    # token 0: min(1.5, 1.2) * 1 = 1.2 ; token 1: min(0.5, 0.8) * 1 = 0.5 ;
    # token 2: min(1.1 * -2, 1.1 * -2) = -2.2  -> loss = -(1.2 + 0.5 - 2.2) / 3 = 0.5 / 3
    assert math.isclose(float(policy_loss(logp, old, advantages, mask, 0.2)), 0.5 / 3, rel_tol=1e-6)


def test_ppo_policy_loss_ignores_masked_tokens():
    logp, old = torch.tensor([[0.0, 5.0]]), torch.zeros(1, 2)
    loss = policy_loss(logp, old, torch.tensor([[1.0, 100.0]]), torch.tensor([[1.0, 0.0]]), 0.2)
    assert math.isclose(float(loss), -1.0)


def test_ppo_value_loss_takes_the_worse_of_clipped_and_unclipped():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 1.0]])
    # token 0: unclipped (1 - 0.5)^2 = 0.25, clipped v = 0.2 -> (0.2 - 0.5)^2 = 0.09 -> 0.25
    # token 1: (0 - 1)^2 = 1, clipped 0 -> 1 -> max 1 ; loss = 0.5 * (0.25 + 1) / 2 = 0.3125
    assert math.isclose(float(value_loss(values, old, returns, torch.ones(1, 2), 0.2)), 0.3125)


def test_shaped_rewards_put_the_reward_on_the_last_agent_token_and_subtract_kl():
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    logp, ref = torch.tensor([[-1.0, 0.0, -2.0, 0.0]]), torch.tensor([[-1.5, 0.0, -1.0, 0.0]])
    rewards = shaped_rewards(torch.tensor([3.0]), logp, ref, mask, kl_coef=0.1)
    # token 0: -0.1 * (-1 + 1.5) = -0.05 ; token 2: 3 - 0.1 * (-2 + 1) = 3.1
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, 3.1, 0.0]]))


def test_reinforce_loss_is_the_advantage_weighted_negative_log_likelihood():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -4.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    advantages = torch.tensor([0.5, -1.0])
    # -(0.5 * -1 + 0.5 * -2 + -1 * -0.5) / 3 = -(-0.5 - 1 + 0.5) / 3 = 1/3
    assert math.isclose(float(reinforce_loss(logp, advantages, mask)), 1 / 3, rel_tol=1e-6)


def test_token_logprobs_line_up_with_completion_tokens():
    episode = Episode("p", [1, 2], [3, 4], [1, 0])
    batch = batching.collate([episode], pad_id=0, device=torch.device("cpu"))
    vocab = 5
    logits = torch.zeros(1, 4, vocab)
    logits[0, 1, 3] = 10.0  # position 1 (last prompt token) predicts completion token 3
    logits[0, 2, 4] = 10.0  # position 2 predicts completion token 4
    logp = batching.token_logprobs(logits, batch)
    assert logp.shape == (1, 2) and bool((logp > -0.01).all())
    assert batch.mask.tolist() == [[1.0, 0.0]]


def test_sft_target_follows_the_correction():
    item = Item(Query("ask my dog ?", True), "fact:dog", "rex", None, True)
    said = Episode("p", [], completion="<answer> { answer : max } </answer>")
    grammar = PROTOCOLS["grammar"]
    assert (
        corrected_target(item, said, Statement("my", "dog", "rex"), grammar)
        == " <answer> { answer : rex } </answer>"
    )
    preference = Item(Query("ask kalo color ?", True), "world:kalo:color", "red", "json", False)
    wrong_format = Episode("p", [], completion="<answer> - red </answer>")
    assert (
        corrected_target(preference, wrong_format, Statement("format", "color", "json"), grammar)
        == " <answer> { answer : red } </answer>"
    )


def test_ppo_diagnostics_against_hand_computed_values():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 1.1, 9.0]]))  # ratios 1.5, 1.1 (the masked 9 is ignored)
    # (r - 1) - log r: 0.5 - log 1.5 = 0.094535 ; 0.1 - log 1.1 = 0.004690 ; mean 0.049612
    assert math.isclose(approx_kl(logp, old, mask), 0.049612, rel_tol=1e-4)
    assert clip_fraction(logp, old, mask, 0.2) == 0.5  # 1.5 is outside [0.8, 1.2], 1.1 is not
    returns = torch.tensor([[1.0, 3.0, 100.0]])
    assert explained_variance(returns, returns, mask) == 1.0
    # errors (0, 1): variance 0.25 ; returns (1, 3): variance 1 -> 1 - 0.25 = 0.75
    assert math.isclose(explained_variance(torch.tensor([[1.0, 2.0, 0.0]]), returns, mask), 0.75)
    assert explained_variance(torch.zeros(1, 3), torch.ones(1, 3), mask) is None


def test_first_token_advantage_and_query_share():
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    advantages = torch.tensor([[9.0, -1.0, 1.0], [-0.5, 0.5, 9.0], [2.0, 0.0, 0.0], [0.0, 3.0, 3.0]])
    # first agent tokens: -1.0 (row 0 starts at 1), -0.5, 2.0, 0.0 -> mean 0.125
    assert math.isclose(first_token_advantage(advantages, mask), 0.125)
    # per response: 0, 0, 2, 2 ; queries of 2: (0, 0) and (2, 2) -> all variance is between queries
    assert math.isclose(query_offset_share(advantages, mask, group=2), 1.0, rel_tol=1e-6)
    assert query_offset_share(advantages, mask, group=1) == 1.0  # each response is its own query
    # reordered, per response 0, 2, 0, 2: queries (0, 2), (0, 2) with equal means -> none between them
    swapped = advantages[[0, 2, 1, 3]]
    assert math.isclose(query_offset_share(swapped, mask[[0, 2, 1, 3]], group=2), 0.0, abs_tol=1e-6)
    assert query_offset_share(torch.zeros(4, 3), mask, group=2) is None
