"""The config sections of every paradigm (``paradigm:``), the ``algorithm:`` base and ``meta:``.

Declared here, apart from the paradigms' code, so that this module imports nothing but pydantic
and the task package: validating an experiment file (``harness config show``, every answer to
bad input) never loads torch, transformers or FAISS. Each paradigm module takes its ``Settings``
from here, and the registries (``paradigms.PARADIGMS``, ``paradigms.algorithms.ALGORITHMS``)
hand them out without importing the paradigm. The algorithms' own sections are in
``paradigms/rl/settings.py``.

Limits (``le=``) are where a value would exhaust the machine before doing anything useful: a LoRA
rank beyond any model's width, a retrieval of more notes than a prompt holds, a meta-training
stream longer than a run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tasks.suites import MAX_STREAM_LENGTH

#: The file a saved adapter start must hold (``paradigm.init``).
INIT_WEIGHTS = "adapter_model.safetensors"
#: LoRA ranks above this exceed the width of any model the harness runs (r is at most the width).
MAX_LORA_RANK = 1024
#: Notes retrieved into one prompt; more would crowd out the question.
MAX_TOP_K = 100
MAX_META_ITERATIONS = 100_000
MAX_META_BATCH = 64
MAX_META_USERS = 1_000_000

#: How every config section validates: unknown keys refused, values frozen, and no infinity or NaN
#: (``1e309`` in YAML is the string "1e309", which a float field would otherwise read as inf).
SECTION = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ParadigmSettings(BaseModel):
    """Base of every paradigm's config section (``paradigm:`` in an experiment file)."""

    model_config = SECTION
    name: str
    #: Whether the paradigm trains with the config's ``algorithm`` (RL or SFT); others need ``none``.
    uses_algorithm: ClassVar[bool] = False
    #: Whether it accepts the ``continual:`` section (replay, regularizers, distillation).
    supports_continual: ClassVar[bool] = False

    def algorithm_problem(self, algorithm: AlgorithmSettings) -> str | None:
        """Why ``algorithm`` cannot run with these settings, as a config error line (None: it can)."""
        return None


class AlgorithmSettings(BaseModel):
    """Base of every algorithm's config section."""

    model_config = SECTION
    name: str
    #: Whether this is a real learning rule (everything except ``none``).
    trains: ClassVar[bool] = True


class NoAlgorithm(AlgorithmSettings):
    """No learning rule: the paradigm learns without changing weights, or not at all."""

    name: Literal["none"] = "none"
    trains: ClassVar[bool] = False


class ToolPolicySettings(BaseModel):
    """The ``paradigm.tool_policy`` section (``frozen`` and ``memory``)."""

    model_config = SECTION
    name: Literal["none", "qlearning"] = Field(
        "none", description="none: the model decides when to search; qlearning: a learned tabular policy."
    )
    epsilon: float = Field(0.2, ge=0, le=1, description="Exploration rate at the start (random action).")
    epsilon_decay: float = Field(
        0.97, gt=0, le=1, description="Factor applied to epsilon after every learning batch."
    )
    min_epsilon: float = Field(0.0, ge=0, le=1, description="Floor of the decayed epsilon.")
    learning_rate: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Floor of the step size of Q <- Q + step (reward - Q), step = max(1/n, learning_rate) "
        "at an action's n-th reward in a state: the sample mean at first, then a constant step that "
        "tracks drift.",
    )

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value):
        """``paradigm.tool_policy: qlearning`` is short for ``{name: qlearning}``."""
        return {"name": value} if isinstance(value, str) else value


class FrozenSettings(ParadigmSettings):
    name: Literal["frozen"] = "frozen"
    tool_policy: ToolPolicySettings = Field(
        default_factory=ToolPolicySettings,
        description="Who decides when to search: the model (none) or a learned Q-learning policy.",
    )


class OracleSettings(ParadigmSettings):
    name: Literal["oracle"] = "oracle"
    notes: Literal["profile", "relevant"] = Field(
        "profile",
        description="profile: the user's whole current profile in every prompt; relevant: only the "
        "profile entry the question is about (the asked fact, or the asked kind's format preference).",
    )


class WeightLearningSettings(ParadigmSettings):
    """Base of the sections of paradigms that learn into weights (``full_ft``, ``adapter``)."""

    uses_algorithm: ClassVar[bool] = True
    supports_continual: ClassVar[bool] = True


class FullFinetuneSettings(WeightLearningSettings):
    name: Literal["full_ft"] = "full_ft"


class AdapterSettings(WeightLearningSettings):
    name: Literal["adapter"] = "adapter"
    rank: int = Field(8, ge=1, le=MAX_LORA_RANK, description=f"LoRA rank r (at most {MAX_LORA_RANK}).")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling alpha (the update is scaled by alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names to adapt, or 'all-linear' (every linear layer but the output head).",
    )
    init: Path | None = Field(
        None,
        description="Start from a saved adapter (a directory with adapter_model.safetensors, e.g. "
        "written by harness meta-train) instead of LoRA's default start (B = 0).",
    )

    @field_validator("init")
    @classmethod
    def _init_fits(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        """The saved start must exist and fit an adapter of this rank and scaling."""
        if path is None:
            return path
        if not (Path(path) / INIT_WEIGHTS).is_file():
            raise ValueError(f"no {INIT_WEIGHTS} in {path}; pass a directory written by harness meta-train")
        config = Path(path) / "adapter_config.json"
        saved = json.loads(config.read_text()) if config.is_file() else {}
        for field, key in (("rank", "r"), ("alpha", "lora_alpha")):
            if key in saved and field in info.data and float(saved[key]) != float(info.data[field]):
                raise ValueError(
                    f"{path} was trained with {field} {saved[key]}; set paradigm.{field}={saved[key]}"
                )
        return path


class MemorySettings(ParadigmSettings):
    name: Literal["memory"] = "memory"
    top_k: int = Field(
        3, ge=0, le=MAX_TOP_K, description=f"Memories retrieved into each prompt (at most {MAX_TOP_K})."
    )
    capacity: int | None = Field(256, ge=1, description="Most memories kept (None: unbounded).")
    eviction: Literal["oldest", "least_retrieved"] = Field(
        "oldest", description="Which memory goes when full."
    )
    index: Literal["flat", "hnsw", "ivf"] = Field("flat", description="Exact (flat) or approximate index.")
    dedup_threshold: float | None = Field(
        0.95,
        ge=-1,
        le=1,
        description="Cosine at which a memory with the same text is a duplicate (None: keep duplicates).",
    )
    contradiction: Literal["replace", "keep_both", "newest_first"] = Field(
        "replace",
        description="A new lesson about the same key replaces the old one, sits beside it, or "
        "hides it in retrieval.",
    )
    reflection: Literal["llm", "template", "none"] = Field(
        "llm", description="Who writes lessons: the backbone, a template, or nobody (raw experiences stored)."
    )
    write_policy: Literal["all", "failures", "corrected"] = Field(
        "all", description="Which interactions are written: every one, failures only, corrected ones only."
    )
    embedder: Literal["minilm", "backbone"] = Field(
        "minilm", description="MiniLM sentence embeddings or the backbone's mean-pooled hidden states."
    )
    min_similarity: float = Field(
        -1.0, ge=-1, le=1, description="Retrieved memories below this cosine are left out of the prompt."
    )
    tool_policy: ToolPolicySettings = Field(
        default_factory=ToolPolicySettings,
        description="Who decides when to search: the model (none) or a learned Q-learning policy.",
    )


class HybridSettings(AdapterSettings):
    """``hybrid`` (``paradigms/hybrid.py``): the adapter's knobs on top, the memory's under ``memory:``."""

    name: Literal["hybrid"] = "hybrid"
    route: Literal["kind", "feedback", "both"] = Field(
        "kind",
        description="Which feedback goes where: kind (facts to memory, habits to the adapter), feedback "
        "(corrections to memory, rewards to the adapter), both (everything to both).",
    )
    memory: MemorySettings = Field(
        default_factory=MemorySettings,
        description="The memory part's knobs, as the memory paradigm's (top_k, capacity, reflection, ...).",
    )

    @field_validator("memory")
    @classmethod
    def _model_decides_searches(cls, memory: MemorySettings) -> MemorySettings:
        if memory.tool_policy.name != "none":
            raise ValueError(
                "the hybrid's RL learner samples its own searches; set paradigm.memory.tool_policy.name=none"
            )
        return memory

    def algorithm_problem(self, algorithm: AlgorithmSettings) -> str | None:
        if self.route == "feedback" and algorithm.name == "sft":
            return (
                "paradigm.route: feedback sends every correction to memory, and sft learns from corrections "
                "only; use paradigm.route=kind or both with sft, or an RL algorithm"
            )
        return None


class MetaSettings(BaseModel):
    """The ``meta:`` section of an experiment file (read by ``harness meta-train`` only)."""

    model_config = SECTION
    iterations: int = Field(
        24, ge=1, le=MAX_META_ITERATIONS, description="Meta-iterations (meta_batch sampled users each)."
    )
    meta_batch: int = Field(
        1,
        ge=1,
        le=MAX_META_BATCH,
        description="Users adapted from the same start per meta-iteration; the start moves toward "
        "the mean of their adapted weights (batched Reptile).",
    )
    users: int = Field(
        64,
        ge=1,
        le=MAX_META_USERS,
        description="Size of the pool of meta-training users sampled from (seeds 1e9, 1e9+1, ...).",
    )
    inner_events: int = Field(
        64,
        ge=1,
        le=MAX_STREAM_LENGTH,
        description="Feedback events of inner adaptation per meta-iteration (k updates of a batch).",
    )
    meta_lr: float = Field(1.0, gt=0, le=1, description="Reptile step size at the first meta-iteration.")
    meta_lr_final: float = Field(
        0.1, ge=0, le=1, description="Reptile step size at the last meta-iteration (linear anneal)."
    )
    seed: int = Field(0, ge=0, description="Seeds the start, the user sampling and the inner learners.")
