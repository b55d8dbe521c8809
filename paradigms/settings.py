"""The config sections of the paradigms whose code needs torch (``paradigm:``) and ``meta:``.

Declared here, apart from the paradigms' code, so that this module imports nothing but pydantic
and the task package: validating an experiment file (``harness config show``, every answer to
bad input) never loads torch, transformers or FAISS. Each paradigm module takes its ``Settings``
from here, and the registries (``paradigms.PARADIGMS``, ``paradigms.algorithms.ALGORITHMS``)
hand them out without importing the paradigm. The bases are in ``paradigms/sections.py``; the
memory paradigm's section, with its store's, is in ``paradigms/memory/settings.py``; the
algorithms' in ``paradigms/rl/settings.py``.

Limits (``le=``) are where a value would exhaust the machine before doing anything useful: a LoRA
rank beyond any model's width, a meta-training stream longer than a run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from paradigms.memory.settings import MemorySettings
from paradigms.sections import SECTION, AlgorithmSettings, ParadigmSettings, ToolPolicySettings
from tasks.suites import MAX_STREAM_LENGTH

#: The file a saved adapter start must hold (``paradigm.init``).
INIT_WEIGHTS = "adapter_model.safetensors"
#: LoRA ranks above this exceed the width of any model the harness runs (r is at most the width).
MAX_LORA_RANK = 1024
MAX_META_ITERATIONS = 100_000
MAX_META_BATCH = 64
MAX_META_USERS = 1_000_000


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
