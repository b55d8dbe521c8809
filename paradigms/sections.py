"""The bases of the paradigm package's config sections: a paradigm's (``paradigm:``), an algorithm's
(``algorithm:``, with ``none``) and the tool policy every paradigm that searches may use.

The sections themselves are declared beside the code that reads them, each importing nothing but
pydantic and the task package, so validating a config never loads torch, transformers or FAISS:
``paradigms/settings.py`` (frozen, oracle, full_ft, adapter, hybrid, ``meta:``),
``paradigms/memory/settings.py`` (memory and its store), ``paradigms/rl/settings.py`` (the
algorithms and ``continual:``), ``paradigms/generation.py`` (``generation:``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from tasks.settings import SECTION

__all__ = ["SECTION", "AlgorithmSettings", "NoAlgorithm", "ParadigmSettings", "ToolPolicySettings"]


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
    min_tries: int = Field(
        10,
        ge=0,
        description="Explore first: in training, a state the policy has seen takes its less-tried action "
        "until each action has this many rewards there (0: epsilon-greedy alone).",
    )
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
