"""``grpo``: TRL's ``GRPOTrainer`` driven by the harness's stream, rollout and reward functions.

The trainer owns the optimization loop; the harness supplies:

- the training dataset: the stream's questions in order (``shuffle_dataset=False``), one row per
  query, so the trainer's prompt order is the stream's order;
- a ``rollout_func`` that takes the next items from the session (resolved for the drift phase
  then in force), answers each ``group_size`` times through the shared rollout (search tool
  included) and returns the env mask, so tool output is kept out of the loss, plus the answer
  key columns the reward functions read; with ``algorithm.vllm`` the rollout's tokens are drawn by
  TRL's vLLM engine (``paradigms.vllm_sampler``) and their log-probabilities returned too;
- the rewards: every response is scored once, by the session's scorer (``tasks.rewards`` through
  ``Session.score``, the same code every paradigm is scored by); TRL's reward functions read those
  component values back from the rollout's columns, weighted by the config's weights;
- a callback that reports each optimizer step's batch to the session (feedback events, which
  is where the runner evaluates), with TRL's loss, KL and clip figures;
- the continual-learning terms (``paradigms.rl.continual``), added to TRL's loss in
  ``compute_loss`` on the step's own sequences, exactly as the other learners add them.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback

from paradigms.collector import older_objects_frozen
from paradigms.rl import batching
from paradigms.rl.learner import Learner
from paradigms.rl.settings import GRPOSettings
from paradigms.session import Diverged, Interaction, Session, item_columns
from paradigms.vllm_sampler import VLLMSampler, release_engine
from tasks.rewards import REWARD_COMPONENTS, check_weights

_TRL_METRICS = {
    "loss": "train/policy_loss",
    "kl": "train/kl",
    "grad_norm": "train/grad_norm",
    "clip_ratio/region_mean": "train/clip_ratio",
    "entropy": "train/entropy",
}


class _ReportSteps(TrainerCallback):
    """After each optimizer step's log, hand the step's interactions to the session."""

    def __init__(self, learner: GRPO):
        self.learner = learner

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        metrics = {name: float(logs[key]) for key, name in _TRL_METRICS.items() if key in logs}
        metrics.update({key: float(v) for key, v in logs.items() if key.startswith("train/loss/")})
        # with algorithm.vllm: how far the engine's log-probabilities are from the policy's, and TRL's
        # correction for it
        metrics.update({f"train/{key}": float(v) for key, v in logs.items() if key.startswith("sampling/")})
        loss = metrics.get("train/policy_loss", 0.0)
        if not math.isfinite(loss):
            raise Diverged(
                f"GRPO loss became {loss} at optimizer step {state.global_step}; lower "
                f"algorithm.learning_rate or the reward weights"
            )
        self.learner.flush(metrics)


class GRPO(Learner):
    Settings = GRPOSettings
    min_group_size = 2

    def __init__(self, settings: GRPOSettings, host):
        super().__init__(settings, host)
        self.session: Session | None = None
        self.pending: list[Interaction] = []

    def update(self, interaction: Interaction, events: int) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError("GRPO updates inside TRL's GRPOTrainer; see run()")

    def flush(self, metrics: dict[str, float]) -> None:
        """Report the interactions generated since the last optimizer step."""
        for index, interaction in enumerate(self.pending):
            self.count_tokens(interaction)
            trained = interaction.select(self.host.trains_on(interaction))
            self.continual.observe(trained.episodes, trained.components)
            self.host.after_update(interaction, self.session.events + interaction.feedback_events)
            self.session.record(interaction, metrics if index == len(self.pending) - 1 else {})
        self.pending = []

    def count_tokens(self, interaction: Interaction) -> None:
        tokens = sum(len(e.prompt_ids) + len(e.completion_ids) for e in interaction.episodes)
        self.update_flops += (1 + self.settings.num_iterations) * self.host.update_flops_per_token() * tokens

    def rollout(self, prompts: list[str], trainer) -> dict:
        """TRL's ``rollout_func``: ``prompts`` holds each query's stream key ``group_size`` times."""
        group = self.settings.group_size
        start = self.session.position
        items = self.session.next_items(len(prompts) // group)
        for index, item in enumerate(items):
            if prompts[index * group] != _stream_key(start + index, item.query.question):
                raise RuntimeError(f"GRPO prompt order diverged from the stream at {item.query.question!r}")
        contexts = self.host.training_contexts(items)
        sampler = None
        if trainer.use_vllm:
            policy = self.host.policy
            sampler = VLLMSampler(trainer.vllm_generation, self.host.tokenizer, policy.config.vocab_size)
        interaction = self.session.interact(
            self.host.policy, self.host.tokenizer, items, contexts, group_size=group, sampler=sampler
        )
        self.pending.append(interaction)
        episodes = interaction.episodes
        # responses the host keeps from the weights (a hybrid's routing) get no loss token: whole groups
        trained = self.host.trains_on(interaction)
        components = [
            {name: values[i] for name, values in interaction.components.items()} for i in range(len(episodes))
        ]
        return {
            "prompt_ids": [e.prompt_ids for e in episodes],
            "completion_ids": [e.completion_ids for e in episodes],
            # the sampling engine's log-probabilities, for TRL's importance-sampling correction (vLLM only)
            "logprobs": [e.sampling_logprobs for e in episodes] if sampler is not None else None,
            "env_mask": [
                e.env_mask if keep else [0] * len(e.env_mask)
                for e, keep in zip(episodes, trained, strict=True)
            ],
            "components": components,
            **item_columns(interaction.items, self.session.protocol),
        }

    def run(self, session: Session) -> None:
        from trl import GRPOConfig, GRPOTrainer  # heavy import, only when GRPO runs

        s = self.settings
        self.session = session
        self.continual.start(session.user.seed)
        queries_per_step = max(1, min(session.batch_size, session.remaining // s.group_size))
        steps = max(1, session.remaining // (queries_per_step * s.group_size))
        rows = session.stream.select(range(session.position, session.position + steps * queries_per_step))
        dataset = Dataset.from_dict({"prompt": [_stream_key(r["position"], r["question"]) for r in rows]})
        names = REWARD_COMPONENTS.names()
        check_weights(session.weights)  # every component weighted: none silently counts zero
        weights = [float(session.weights[name]) for name in names]
        generation = session.generation
        on_cpu = self.host.device.type == "cpu"
        with tempfile.TemporaryDirectory(prefix="grpo-") as scratch:
            config = GRPOConfig(
                output_dir=scratch,
                use_cpu=on_cpu,
                # mixed precision only where the weights already are bfloat16 (dtype auto on a GPU)
                bf16=not on_cpu and next(self.host.policy.parameters()).dtype == torch.bfloat16,
                learning_rate=s.learning_rate,
                weight_decay=s.weight_decay,
                max_grad_norm=s.max_grad_norm,
                lr_scheduler_type="constant",
                per_device_train_batch_size=queries_per_step * s.group_size,
                gradient_accumulation_steps=1,
                num_generations=s.group_size,
                max_steps=steps,
                beta=s.kl_coef,
                epsilon=s.clip_range,
                loss_type=s.loss_type,
                scale_rewards=s.scale_rewards,
                num_iterations=s.num_iterations,
                reward_weights=weights,
                shuffle_dataset=False,
                max_completion_length=generation.max_new_tokens,
                temperature=max(generation.temperature, 1e-3),
                report_to="none",
                logging_steps=1,
                save_strategy="no",
                disable_tqdm=True,
                remove_unused_columns=False,
                seed=session.user.seed,
                dataloader_num_workers=0,
                gradient_checkpointing=s.gradient_checkpointing,  # TRL's default is on
                use_vllm=s.vllm != "off",
                vllm_mode=s.vllm if s.vllm != "off" else "colocate",
                vllm_server_base_url=s.vllm_server_url,
                vllm_gpu_memory_utilization=s.vllm_gpu_memory_utilization,
            )
            trainer = _with_continual(GRPOTrainer)(
                learner=self,
                model=self.host.policy,
                reward_funcs=[_scored(name) for name in names],
                args=config,
                train_dataset=dataset,
                processing_class=self.host.tokenizer,
                rollout_func=self.rollout,
                callbacks=[_ReportSteps(self)],
            )
            trainer.remove_callback(PrinterCallback)  # the runner reports; no dicts on stdout
            try:
                # Trainer.train starts with accelerate's free_memory, a full gc.collect(): ~0.3 s over every
                # object of the ML stack and MLflow, more than a whole builtin GRPO step; what it could free
                # was made during training
                with completion_positions_only(), older_objects_frozen():
                    trainer.train()
            finally:
                release_engine(getattr(trainer, "vllm_generation", None))
        if self.pending:
            self.flush({})


@contextmanager
def completion_positions_only() -> Iterator[None]:
    """Within the block, TRL's fused LM head projects only the completion positions, on every device.

    ``GRPOTrainer`` always patches the policy with a fused LM head (``trl.trainer.utils.add_fused_lm_head``)
    that computes the completions' log-probabilities and entropies in vocabulary tiles. Where Triton runs
    (CUDA, XPU) it projects only the positions that have a label (the completion's tokens); elsewhere it
    projects *every* position, prompt and padding included, and zeroes the unlabelled ones afterwards, so
    that tile shapes stay fixed for compiling backends. Eager CPU compiles nothing, and on SmolLM2's
    49k-token vocabulary the prompt positions made the update 1.7x one raw forward+backward
    (``benchmarks/rl_overhead.py``). The math per position is TRL's own either way: the same tile
    function, fed only the rows it keeps. A TRL without the switch is left as it is
    (``tests/test_grpo_scoring.py`` fails then).
    """
    import trl.trainer.utils as fused_head  # heavy import, only when GRPO runs

    decide = getattr(fused_head, "_use_triton", None)
    if decide is None:
        yield
        return
    fused_head._use_triton = lambda device: True  # only the compaction reads this name in that module
    try:
        yield
    finally:
        fused_head._use_triton = decide


def _stream_key(position: int, question: str) -> str:
    """What TRL sees as a prompt: the stream position and question (the rollout renders the real prompt)."""
    return f"{position} {question}"


def _scored(component: str):
    """A TRL reward function returning the session's score of ``component`` for each completion.

    The rollout scored every response once (``Session.score``) and passed the values in the
    ``components`` column; reading them back keeps one scorer for every paradigm and algorithm.
    """

    def reward(prompts, completions, components, **_) -> list[float]:
        return [float(c[component]) for c in components]

    reward.__name__ = component
    return reward


def trl_batch(inputs: dict) -> batching.EpisodeBatch:
    """A TRL GRPO batch (left-padded prompts, then completions) in the harness's ``EpisodeBatch`` layout."""
    prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]  # (B, P), (B, C)
    mask = inputs["completion_mask"]  # (B, C)
    if "tool_mask" in inputs:
        mask = mask * inputs["tool_mask"]
    rows, width = completion_ids.shape
    index = prompt_ids.shape[1] + torch.arange(width, device=completion_ids.device)  # (C,)
    return batching.EpisodeBatch(
        input_ids=torch.cat([prompt_ids, completion_ids], dim=1),  # (B, P + C)
        attention_mask=torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
        completion_index=index.expand(rows, width),
        completion_ids=completion_ids,
        mask=mask.float(),
    )


def _with_continual(trainer_class):
    """``GRPOTrainer`` whose loss also carries the learner's continual-learning terms."""

    class ContinualGRPOTrainer(trainer_class):
        def __init__(self, *args, learner: GRPO, **kwargs):
            super().__init__(*args, **kwargs)
            self.learner = learner

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if not self.learner.continual.active:
                return loss
            total, terms = self.learner.continual.loss(loss, trl_batch(inputs))
            for key, value in terms.items():
                self._metrics["train"][key].append(value)
            return total

    return ContinualGRPOTrainer
