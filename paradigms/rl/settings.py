"""The config sections of the learning algorithms (``algorithm:``) and of ``continual:``.

Light (pydantic only) for the same reason as ``paradigms/settings.py``: the config is validated
without importing torch. The learners in this package take their ``Settings`` from here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from paradigms.sections import SECTION, AlgorithmSettings

#: Responses per query; a group is generated at once, so its size multiplies a step's memory.
MAX_GROUP_SIZE = 64
#: General sequences per update or Fisher estimate; more only costs time and memory.
MAX_GENERAL_SEQUENCES = 10_000


class RLSettings(AlgorithmSettings):
    """Knobs every weight-changing algorithm shares."""

    learning_rate: float = Field(1e-3, gt=0, description="Optimizer (AdamW) learning rate.")
    group_size: int = Field(
        4,
        ge=1,
        le=MAX_GROUP_SIZE,
        description="Responses sampled per query (a group is G feedback events).",
    )
    kl_coef: float = Field(0.0, ge=0, description="Weight of the KL(policy || base) penalty (0 = off).")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less "
        "memory for large models, slower for small ones.",
    )


class ExploringSettings(RLSettings):
    """An RL algorithm's knobs: it learns from rewards on what it samples, so it may need a warm start."""

    warm_start_events: int = Field(
        0,
        ge=0,
        description="Feedback events learned first by imitating the user's corrections (the sft update, "
        "same learning rate) before this algorithm takes over: RL only reinforces what the model "
        "samples, so a habit it never writes needs showing first (docs/real-model.md). 0 = none.",
    )


class GRPOSettings(ExploringSettings):
    name: Literal["grpo"] = "grpo"
    group_size: int = Field(
        8, ge=2, le=MAX_GROUP_SIZE, description="Completions per query; advantages are relative to the group."
    )
    clip_range: float = Field(0.2, gt=0, description="Ratio clip epsilon (TRL's epsilon).")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        "dapo", description="TRL's loss aggregation."
    )
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Advantage scaling by std.")
    num_iterations: int = Field(1, ge=1, description="Optimization passes per generated batch (TRL's mu).")
    vllm: Literal["off", "colocate", "server"] = Field(
        "off",
        description="Sample the training rollouts with vLLM through TRL (a CUDA GPU and "
        "`pip install 'trl[vllm]'`): colocate runs the engine in this process, server uses a "
        "`trl vllm-serve` at vllm_server_url. "
        "Evaluations generate with the policy either way (paradigms/vllm_sampler.py).",
    )
    vllm_server_url: str | None = Field(
        None, description="Base URL of the `trl vllm-serve` server (vllm: server); None: TRL's default."
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="Share of the GPU's memory the colocated engine takes (vllm: colocate)."
    )


class PPOSettings(ExploringSettings):
    name: Literal["ppo"] = "ppo"
    clip_range: float = Field(0.2, gt=0, description="PPO ratio clip epsilon.")
    value_clip_range: float = Field(0.2, gt=0, description="Clip of the value update around the old value.")
    value_coef: float = Field(0.5, ge=0, description="Weight of the value loss.")
    gamma: float = Field(1.0, ge=0, le=1, description="Discount per agent token.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda.")
    epochs: int = Field(2, ge=1, description="Optimization passes over each batch.")
    whiten_advantages: bool = Field(True, description="Normalize advantages over the batch.")
    value_learning_rate: float = Field(
        1e-2,
        gt=0,
        description="The value head's own learning rate (the policy's is learning_rate); see "
        "paradigms/rl/ppo.py for why it is not the policy's.",
    )


class ReinforceSettings(ExploringSettings):
    name: Literal["reinforce"] = "reinforce"
    group_size: int = Field(
        4, ge=2, le=MAX_GROUP_SIZE, description="Responses per query; the baseline is the other G-1."
    )


class SFTSettings(RLSettings):
    name: Literal["sft"] = "sft"
    group_size: int = Field(
        1, ge=1, le=MAX_GROUP_SIZE, description="Responses per query (1: one answer, one correction)."
    )
    epochs: int = Field(1, ge=1, description="Passes over each batch's targets.")


class ContinualSettings(BaseModel):
    """The ``continual:`` section: mechanisms against forgetting (``full_ft`` and ``adapter`` only)."""

    model_config = SECTION
    replay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share r of each update drawn from replay data: the loss is (1-r) x the update's "
        "loss + r x the replay NLL of ceil(r/(1-r) x B) replayed sequences (0 = off).",
    )
    replay_source: Literal["general", "user"] = Field(
        "general",
        description="general: world questions of the base's corpus (never the probe's held-out "
        "instruction); user: this user's earlier exactly right responses.",
    )
    regularizer: Literal["none", "kl", "l2sp", "ewc"] = Field(
        "none",
        description="kl: KL(policy || base) on the update's own tokens; l2sp: 1/2 |theta - theta_0|^2; "
        "ewc: 1/2 sum F (theta - theta_0)^2, F the general data's diagonal Fisher (mean 1).",
    )
    strength: float = Field(1.0, ge=0, description="Weight of the regularizer's term.")
    distill: float = Field(
        0.0, ge=0, description="Weight of KL(base || policy) on general prompts, every update (0 = off)."
    )
    distill_prompts: int = Field(
        16, ge=1, le=MAX_GENERAL_SEQUENCES, description="General sequences distilled on per update."
    )
    fisher_samples: int = Field(
        64,
        ge=1,
        le=MAX_GENERAL_SEQUENCES,
        description="General sequences the EWC Fisher is estimated from, once at the start.",
    )

    @property
    def active(self) -> bool:
        return self.replay > 0 or self.regularizer != "none" or self.distill > 0

    @property
    def label(self) -> str:
        """The active mechanisms for run names: ``replay0.25``, ``userreplay0.25``, ``ewc``, ``distill``."""
        parts = []
        if self.replay > 0:
            parts.append(f"{'user' if self.replay_source == 'user' else ''}replay{self.replay:g}")
        if self.regularizer != "none":
            parts.append(self.regularizer)
        if self.distill > 0:
            parts.append("distill")
        return "+".join(parts)
