"""Episodes as padded tensors, and per-token log-probabilities of the agent's own tokens.

Layout: each row is ``prompt_ids + completion_ids``, right-padded to length L. Log-probabilities
are taken at the positions that predict a completion token, so every per-token tensor below is
(B, C) with C the longest completion: column c is completion token c. ``mask[b, c]`` is 1 for
the agent's tokens (env mask 1) and 0 for tool output and padding: no loss ever sees tool output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from paradigms.agent import Episode


@dataclass
class EpisodeBatch:
    input_ids: torch.Tensor  # (B, L) prompt + completion, right-padded
    attention_mask: torch.Tensor  # (B, L)
    completion_index: torch.Tensor  # (B, C) position in the row of completion token c (0 where padded)
    completion_ids: torch.Tensor  # (B, C)
    mask: torch.Tensor  # (B, C) float, 1 = agent token

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(episodes: Sequence[Episode], pad_id: int, device: torch.device) -> EpisodeBatch:
    """Pad episodes into one batch (see the module docstring for the layout)."""
    rows = [e.prompt_ids + e.completion_ids for e in episodes]
    length = max(len(r) for r in rows)
    width = max(1, max(len(e.completion_ids) for e in episodes))
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    index = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.float32)
    for b, (row, episode) in enumerate(zip(rows, episodes, strict=True)):
        input_ids[b, : len(row)] = torch.tensor(row)
        attention[b, : len(row)] = 1
        n, start = len(episode.completion_ids), len(episode.prompt_ids)
        if n:
            index[b, :n] = torch.arange(start, start + n)
            completion[b, :n] = torch.tensor(episode.completion_ids)
            mask[b, :n] = torch.tensor(episode.env_mask, dtype=torch.float32)
    return EpisodeBatch(
        input_ids.to(device), attention.to(device), index.to(device), completion.to(device), mask.to(device)
    )


def gather_completion(per_position: torch.Tensor, batch: EpisodeBatch) -> torch.Tensor:
    """Select, for each completion token c, the row position that predicts it (index - 1).

    ``per_position``: (B, L, ...) computed at every row position. Returns (B, C, ...).
    """
    predicting = (batch.completion_index - 1).clamp(min=0)  # (B, C)
    expand = predicting.view(*predicting.shape, *([1] * (per_position.dim() - 2)))
    expand = expand.expand(*predicting.shape, *per_position.shape[2:])
    return torch.gather(per_position, 1, expand)


def forward(model, batch: EpisodeBatch, hidden: bool = False):
    """The model's output on the batch (with hidden states when ``hidden``)."""
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=hidden)


def token_logprobs(logits: torch.Tensor, batch: EpisodeBatch) -> torch.Tensor:
    """log p(completion token c | everything before it): (B, C) from logits (B, L, V)."""
    logp = torch.log_softmax(gather_completion(logits, batch).float(), dim=-1)  # (B, C, V)
    return torch.gather(logp, 2, batch.completion_ids.unsqueeze(-1)).squeeze(-1)  # (B, C)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (0 when the mask is empty)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens (Schulman's k3, as TRL)."""
    delta = ref_logp - logp  # (B, C)
    return torch.exp(delta) - delta - 1
