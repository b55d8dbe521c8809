"""``sft``: supervised fine-tuning on the user's corrections, the non-RL baseline.

After each batch, every corrected response becomes a target completion: the corrected answer,
given directly (no search), in the format the user asked for or corrected to, else the format
the agent used. The loss is the negative log-likelihood of the target's tokens. Without textual
feedback (``task.feedback: scalar``) there is nothing to imitate and the model stays put.

Written here rather than with TRL's ``SFTTrainer``: the targets arrive online, a few per batch,
interleaved with generation and evaluation on one feedback-event axis, while ``SFTTrainer``
owns a data loop over a fixed dataset.
"""

from __future__ import annotations

from paradigms.agent import Episode
from paradigms.rl import batching
from paradigms.rl.learner import Learner
from paradigms.rl.settings import SFTSettings
from paradigms.session import Interaction
from tasks.items import Item
from tasks.protocols import FORMAT_SUBJECT, Protocol, Statement


def corrected_target(
    item: Item, episode: Episode, correction: Statement, protocol: Protocol, tokenizer=None
) -> str:
    """The completion the correction implies, in the protocol's words (e.g. ``<answer> { answer :
    rex } </answer>``): the corrected value in the wanted format, or the value said in the corrected
    format."""
    said = protocol.parse_answer(episode.completion, item.candidates)
    if correction.subject == FORMAT_SUBJECT:
        return protocol.answer_text(said.value or item.gold, correction.value, item.query, tokenizer)
    fmt = item.query.instruction or item.wanted_format or said.format or "plain"
    return protocol.answer_text(correction.value, fmt, item.query, tokenizer)


class SFT(Learner):
    Settings = SFTSettings

    def update(self, interaction: Interaction, events: int) -> dict[str, float]:
        tokenizer, protocol = self.host.tokenizer, self.host.protocol
        targets = []
        for item, episode, correction in zip(
            interaction.items, interaction.episodes, interaction.corrections, strict=True
        ):
            if correction is None:
                continue
            target = corrected_target(item, episode, correction, protocol, tokenizer)
            ids = tokenizer(target, add_special_tokens=False)["input_ids"]
            targets.append(Episode(episode.prompt, episode.prompt_ids, ids, [1] * len(ids)))
        if not targets:
            return {"train/sft_targets": 0.0}
        batch = batching.collate(targets, tokenizer.pad_token_id, self.host.device)
        metrics = {"train/sft_targets": float(len(targets))}
        for _ in range(self.settings.epochs):
            logp = batching.token_logprobs(batching.forward(self.host.policy, batch).logits, batch)
            loss = -batching.masked_mean(logp, batch.mask)
            if self.settings.kl_coef > 0:
                kl = batching.masked_mean(
                    batching.kl_k3(logp, self.host.reference_logprobs(batch)), batch.mask
                )
                loss = loss + self.settings.kl_coef * kl
            metrics["train/sft_loss"] = loss.item()
            loss = self.with_continual(loss, batch, metrics)
            metrics["train/grad_norm"] = self.step(loss, events)
        self.count_update(batch, passes=self.settings.epochs)
        return metrics
