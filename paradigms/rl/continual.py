"""Continual learning for the weight-changing paradigms: replay, regularizers, distillation.

One implementation, used by every learner of ``full_ft`` and ``adapter`` (the fairness rule):
each update's loss becomes

    (1 - r) * L_update + r * L_replay + strength * R + distill * L_distill

- ``L_update``: the algorithm's own loss (GRPO, RLOO, PPO or SFT) on the update's B sequences.
- ``L_replay`` (``replay = r`` in [0, 1)): mean token NLL of ``ceil(r / (1 - r) * B)`` replay
  sequences, so r is both the share of the update's sequences and the share of its loss. The
  sequences come from the general world (``replay_source: general``: world questions of the
  base's own training corpus, ``tasks.corpus``, whose instruction is never the one the general
  probe holds out, so no probe prompt is ever trained on; for a chat backbone, its world's stream
  facts answered right, ``ChatGeneralData``) or from this user's earlier exactly
  right responses (``replay_source: user``: self-imitation, tool output masked as always).
- ``R`` (``regularizer``): ``kl`` = KL(policy || base) over the whole vocabulary at the update's
  own agent tokens; ``l2sp`` = 1/2 sum (theta - theta_0)^2 over the trainable parameters, theta_0
  their values at the start (the base weights for ``full_ft``, the fresh adapter for
  ``adapter``); ``ewc`` = 1/2 sum F (theta - theta_0)^2 with F the diagonal empirical Fisher of
  the general world's data, estimated once at the start and scaled to mean 1 (so ``ewc`` and
  ``l2sp`` pull equally hard on a uniform displacement; EWC only redistributes the pull).
- ``L_distill`` (``distill``): KL(base || policy) of next-token distributions at the answer
  tokens of ``distill_prompts`` general-world sequences drawn afresh every update.

The terms are pure tensor functions below (shapes in comments); ``Continual`` binds them to a
paradigm and its data and reports each term as ``train/loss/<term>``. The FLOPs the terms cost
(extra forward and backward passes, the Fisher estimate) are added to the learner's count.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

from paradigms.agent import Episode
from paradigms.rl import batching
from paradigms.rl.settings import ContinualSettings
from tasks.corpus import CorpusGenerator, Example

#: The kind of the base's corpus replay, distillation and the Fisher draw from: a world fact
#: asked in any format, with a format instruction other than the probe's held-out one, or none.
GENERAL_KINDS = {"world": 1.0}
#: Offset of the general data's seed from the run's seed (different draws from the base's build).
GENERAL_SEED_OFFSET = 7919


# -- the terms: pure functions ---------------------------------------------------------------------
def replay_nll(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the replayed tokens. ``logp``, ``mask``: (B, C)."""
    return -batching.masked_mean(logp, mask)


def token_kl(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked positions of the exact KL(p || q) over the vocabulary.

    ``logits_p``, ``logits_q``: (B, C, V) at the same positions; ``mask``: (B, C).
    """
    logp = torch.log_softmax(logits_p.float(), dim=-1)  # (B, C, V)
    logq = torch.log_softmax(logits_q.float(), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, C)
    return batching.masked_mean(kl, mask)


def l2sp_penalty(parameters: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``1/2 sum_i (theta_i - theta0_i)^2`` over every element of every parameter (L2-SP)."""
    return 0.5 * sum(((p - a) ** 2).sum() for p, a in zip(parameters, anchors, strict=True))


def ewc_penalty(
    parameters: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor], fisher: Sequence[torch.Tensor]
) -> torch.Tensor:
    """``1/2 sum_i F_i (theta_i - theta0_i)^2`` (EWC, Kirkpatrick et al. 2017); ``F`` shaped like theta."""
    return 0.5 * sum((f * (p - a) ** 2).sum() for p, a, f in zip(parameters, anchors, fisher, strict=True))


def normalize_fisher(fisher: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The diagonal Fisher scaled to mean 1 over all its elements (unchanged when it is all zero)."""
    total = sum(float(f.sum()) for f in fisher)
    count = sum(f.numel() for f in fisher)
    scale = count / total if total > 0 else 1.0
    return [f * scale for f in fisher]


# -- data ------------------------------------------------------------------------------------------
def example_episode(example: Example, tokenizer) -> Episode:
    """A corpus example as an episode, tokenized as the rollout does (prompt, then completion pieces);
    trainable pieces get env mask 1, tool output 0."""
    prompt = example[0].text
    episode = Episode(prompt, tokenizer(prompt)["input_ids"])
    for segment in example[1:]:
        ids = tokenizer(" " + segment.text, add_special_tokens=False)["input_ids"]
        episode.completion_ids += ids
        episode.env_mask += [int(segment.trainable)] * len(ids)
    return episode


class GeneralData:
    """An endless, seeded draw of general-world sequences from the base's corpus generator."""

    def __init__(self, tokenizer, seed: int):
        self.tokenizer = tokenizer
        self.generator = CorpusGenerator(seed=seed + GENERAL_SEED_OFFSET, mixture=GENERAL_KINDS)

    def draw(self, n: int) -> list[Episode]:
        return [example_episode(self.generator.example(), self.tokenizer) for _ in range(n)]


class ChatGeneralData:
    """General-world sequences for a chat backbone: a stream fact of its world (never a held-out or
    general-probe fact, so no evaluation question is trained on), asked with a random format request
    or none, answered right in that format (any format when none was asked) in the protocol's words."""

    def __init__(self, tokenizer, seed: int, protocol, world):
        self.tokenizer, self.protocol, self.world = tokenizer, protocol, world
        self.rng = random.Random(seed + GENERAL_SEED_OFFSET)

    def draw(self, n: int) -> list[Episode]:
        from tasks.probes import world_item
        from tasks.protocols import FORMATS

        episodes = []
        for _ in range(n):
            entity, kind = self.rng.choice(self.world.stream)
            request = self.rng.choice((None, *FORMATS))
            item = world_item(self.world, entity, kind, False, request, request, "general")
            prompt = self.protocol.render_prompt(item.query, [], self.tokenizer)
            answer = self.protocol.answer_text(
                item.gold, request or self.rng.choice(FORMATS), item.query, self.tokenizer
            )
            ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
            episodes.append(
                Episode(prompt, self.protocol.encode_prompt(prompt, self.tokenizer), ids, [1] * len(ids))
            )
        return episodes


class UserReplay:
    """This user's earlier exactly right responses (right value, wanted format), sampled uniformly."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed + GENERAL_SEED_OFFSET)
        self.episodes: list[Episode] = []

    def observe(self, episodes: Sequence[Episode], correctness: Sequence[float], fmt: Sequence[float]):
        for episode, c, f in zip(episodes, correctness, fmt, strict=True):
            if c * f >= 1 and episode.agent_tokens > 0:
                self.episodes.append(episode)

    def draw(self, n: int) -> list[Episode]:
        if not self.episodes:
            return []
        return [self.rng.choice(self.episodes) for _ in range(n)]


# -- binding to a paradigm --------------------------------------------------------------------------
class Continual:
    """The mechanisms of ``settings`` bound to a weight-learning paradigm (``host``).

    ``start(seed)`` once before the first update (seeds the data, snapshots theta_0, estimates the
    Fisher); ``loss(update_loss, batch)`` per update; ``observe(interaction)`` after each update
    (user replay only ever draws earlier interactions). ``flops`` counts the extra compute.
    """

    def __init__(self, settings: ContinualSettings, host):
        self.settings, self.host = settings, host
        self.flops = 0.0
        self.anchors: list[torch.Tensor] = []
        self.fisher: list[torch.Tensor] = []
        self.general: GeneralData | None = None
        self.user: UserReplay | None = None
        self.started = False

    @property
    def active(self) -> bool:
        return self.settings.active

    def start(self, seed: int) -> None:
        if self.started or not self.active:
            return
        self.started = True
        s = self.settings
        protocol = self.host.protocol
        if protocol.name == "grammar":
            self.general = GeneralData(self.host.tokenizer, seed)
        else:
            world = self.host.session.options.world
            self.general = ChatGeneralData(self.host.tokenizer, seed, protocol, world)
        self.user = UserReplay(seed)
        parameters = self.host.parameters()
        if s.regularizer in ("l2sp", "ewc"):
            self.anchors = [p.detach().clone() for p in parameters]
        if s.regularizer == "ewc":
            self.fisher = self.estimate_fisher(self.general.draw(s.fisher_samples))

    def _collate(self, episodes: Sequence[Episode]) -> batching.EpisodeBatch:
        return batching.collate(episodes, self.host.tokenizer.pad_token_id, self.host.device)

    def _update_flops(self, batch: batching.EpisodeBatch, reference: bool = False) -> float:
        """Forward and backward of the policy over ``batch`` (plus a base forward when ``reference``)."""
        per_token = self.host.update_flops_per_token() + (2.0 * self.host.base_parameters if reference else 0)
        return per_token * batch.tokens

    def estimate_fisher(self, episodes: Sequence[Episode]) -> list[torch.Tensor]:
        """Diagonal empirical Fisher: the mean over sequences of the squared gradient of each
        sequence's mean answer-token NLL, scaled to mean 1 (``normalize_fisher``)."""
        parameters = self.host.parameters()
        fisher = [torch.zeros_like(p) for p in parameters]
        for episode in episodes:
            batch = self._collate([episode])
            logp = batching.token_logprobs(batching.forward(self.host.policy, batch).logits, batch)  # (1, C)
            grads = torch.autograd.grad(replay_nll(logp, batch.mask), parameters, allow_unused=True)
            for f, g in zip(fisher, grads, strict=True):
                if g is not None:
                    f += g.detach() ** 2 / len(episodes)
            self.flops += self._update_flops(batch)
        return normalize_fisher(fisher)

    def observe(self, episodes: Sequence[Episode], components: dict[str, list[float]]) -> None:
        if self.user is not None and self.settings.replay > 0 and self.settings.replay_source == "user":
            self.user.observe(episodes, components["correctness"], components["format"])

    def replay_count(self, own: int) -> int:
        r = self.settings.replay
        return math.ceil(r / (1 - r) * own) if r > 0 else 0

    def loss(self, update_loss: torch.Tensor, batch: batching.EpisodeBatch) -> tuple[torch.Tensor, dict]:
        """The update's loss with every active term added; the terms' values as ``train/loss/...``."""
        if not self.active:
            return update_loss, {}
        s, policy = self.settings, self.host.policy
        metrics: dict[str, float] = {}
        total = update_loss
        rows = int(batch.input_ids.shape[0])
        if s.replay > 0:
            source = self.general if s.replay_source == "general" else self.user
            replayed = source.draw(self.replay_count(rows))
            if replayed:
                replay_batch = self._collate(replayed)
                logp = batching.token_logprobs(batching.forward(policy, replay_batch).logits, replay_batch)
                nll = replay_nll(logp, replay_batch.mask)
                total = (1 - s.replay) * update_loss + s.replay * nll
                metrics["train/loss/replay"] = nll.item()
                self.flops += self._update_flops(replay_batch)
        if s.regularizer != "none":
            term = self.regularizer_term(batch)
            total = total + s.strength * term
            metrics["train/loss/regularizer"] = term.item()
        if s.distill > 0:
            general = self._collate(self.general.draw(s.distill_prompts))
            policy_logits = batching.gather_completion(batching.forward(policy, general).logits, general)
            with torch.no_grad():
                base_logits = batching.gather_completion(self.host.reference_logits(general), general)
            term = token_kl(base_logits, policy_logits, general.mask)  # KL(base || policy)
            total = total + s.distill * term
            metrics["train/loss/distill"] = term.item()
            self.flops += self._update_flops(general, reference=True)
        return total, metrics

    def regularizer_term(self, batch: batching.EpisodeBatch) -> torch.Tensor:
        s = self.settings
        if s.regularizer == "kl":
            policy_logits = batching.gather_completion(
                batching.forward(self.host.policy, batch).logits, batch
            )
            with torch.no_grad():
                base_logits = batching.gather_completion(self.host.reference_logits(batch), batch)
            self.flops += self._update_flops(batch, reference=True)
            return token_kl(policy_logits, base_logits, batch.mask)  # KL(policy || base)
        if s.regularizer == "l2sp":
            return l2sp_penalty(self.host.parameters(), self.anchors)
        return ewc_penalty(self.host.parameters(), self.anchors, self.fisher)
