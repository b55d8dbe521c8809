"""Meta-learning an adapter start across many simulated users with Reptile (first order).

``harness meta-train FILE`` learns the LoRA weights an ``adapter`` run starts from, so that a new
user is learned in fewer feedback events. Each meta-iteration:

1. samples ``meta_batch`` training users (seeds from ``tasks.users.META_USER_SEED_START`` up:
   never a user any run evaluates);
2. for each, loads the current start ``theta`` into the adapter and runs the existing adapter
   learner (the config's algorithm, fresh optimizer) on ``inner_events`` feedback events of that
   user's stream: ``k = inner_events / (batch_size * group_size)`` updates, giving ``phi_j``;
3. moves the start toward the mean adapted weights: ``theta <- theta + meta_lr * (mean_j phi_j -
   theta)`` (``reptile_step``), with ``meta_lr`` annealed linearly to ``meta_lr_final``.

Only LoRA weights are meta-learned; the base stays frozen. Nothing here writes to MLflow: the
caller (``experiments/meta_train.py``) gets every iteration's figures through ``on_iteration``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from paradigms.algorithms import ALGORITHMS
from paradigms.session import FeedbackReport, Session
from paradigms.settings import MetaSettings
from tasks.users import meta_user_seeds


def reptile_step(
    start: Mapping[str, torch.Tensor], adapted: Mapping[str, torch.Tensor], meta_lr: float
) -> dict[str, torch.Tensor]:
    """``start + meta_lr * (adapted - start)`` per tensor (same names and shapes)."""
    return {name: start[name] + meta_lr * (adapted[name] - start[name]) for name in start}


def meta_lr_at(settings: MetaSettings, iteration: int) -> float:
    """The step size of 0-based ``iteration``: linear from ``meta_lr`` to ``meta_lr_final``."""
    if settings.iterations == 1:
        return settings.meta_lr
    fraction = iteration / (settings.iterations - 1)
    return settings.meta_lr + fraction * (settings.meta_lr_final - settings.meta_lr)


def adapter_state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the policy's trainable (LoRA) weights, by parameter name."""
    return {name: p.detach().clone() for name, p in policy.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_adapter_state(policy: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into the policy's trainable weights of the same names."""
    for name, p in policy.named_parameters():
        if name in state:
            p.copy_(state[name])


@dataclass
class MetaIteration:
    """What one meta-iteration did: its users, step size, inner-loop figures and step length.

    ``inner_reward_first``/``_last``: the mean over its users of the first and last inner batch's
    mean reward; ``inner_format_last``: the last inner batch's format compliance.
    """

    iteration: int
    user_seeds: list[int]
    meta_lr: float
    events: int
    inner_reward_first: float
    inner_reward_last: float
    inner_format_last: float
    step_norm: float


SessionFactory = Callable[[int, Callable[[FeedbackReport], None]], Session]


def meta_train(
    adapter, settings: MetaSettings, make_session: SessionFactory, on_iteration=None
) -> dict[str, torch.Tensor]:
    """Reptile over the meta-user pool; returns the learned start (also left loaded in ``adapter``).

    ``adapter`` is an ``adapter`` paradigm (its policy's trainable weights are the LoRA); each
    inner loop builds a fresh learner of its algorithm. ``make_session(user_seed, callback)``
    returns a session of ``settings.inner_events`` events on that user's stream whose callback
    is ``callback``. ``on_iteration(MetaIteration)`` sees each iteration.
    """
    rng = random.Random(f"meta-{settings.seed}")
    pool = meta_user_seeds(settings.users)
    start = adapter_state(adapter.policy)
    events = 0
    for iteration in range(settings.iterations):
        users = [rng.choice(pool) for _ in range(settings.meta_batch)]
        rewards: list[float] = []
        formats: list[float] = []
        adapted_states = []
        for user_seed in users:
            load_adapter_state(adapter.policy, start)
            continual = getattr(adapter.learner, "continual", None)  # the config's continual: mechanisms
            # a fresh learner: a fresh optimizer for every inner loop
            adapter.learner = ALGORITHMS[adapter.algorithm.name](adapter.algorithm, adapter)
            if continual is not None:
                adapter.learner.continual = continual
            user_rewards: list[float] = []

            def record(report: FeedbackReport, user_rewards=user_rewards, formats=formats) -> None:
                interaction = report.interaction
                user_rewards.append(sum(interaction.rewards) / len(interaction.rewards))
                formats.append(sum(interaction.components["format"]) / len(interaction.rewards))

            session = make_session(user_seed, record)
            adapter.learner.run(session)
            adapted_states.append(adapter_state(adapter.policy))
            rewards += [user_rewards[0], user_rewards[-1]] if user_rewards else [0.0, 0.0]
            events += session.events
        adapted = {n: torch.stack([a[n] for a in adapted_states]).mean(0) for n in start}
        lr = meta_lr_at(settings, iteration)
        new_start = reptile_step(start, adapted, lr)
        step_norm = float(torch.sqrt(sum(((new_start[n] - start[n]) ** 2).sum() for n in start)))
        start = new_start
        if on_iteration is not None:
            on_iteration(
                MetaIteration(
                    iteration,
                    users,
                    lr,
                    events,
                    sum(rewards[0::2]) / len(users),
                    sum(rewards[1::2]) / len(users),
                    formats[-1] if formats else 0.0,
                    step_norm,
                )
            )
    load_adapter_state(adapter.policy, start)
    return start
