"""How the rollout (``paradigms.agent``) samples: the config's ``generation:`` section, declared once, and
the settings of one rollout call derived from it.

``GenerationConfig`` is the section (what an experiment file sets, validated and logged).
``GenerationSettings`` is what one ``rollout`` call samples with: one temperature (the learning one or
the evaluation one) and the task's cap on search calls (``task.max_searches``). Its defaults are the
section's and the task section's, read from their fields, and :meth:`GenerationConfig.rollout` builds
it by keyword, so a field can be neither declared twice nor passed to the wrong position.

Light (pydantic only): the config is validated without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from tasks.settings import SECTION, TaskSettings

#: Tokens an answer may take; generation memory grows with it for the whole batch.
MAX_NEW_TOKENS = 2048


class GenerationConfig(BaseModel):
    """How answers are sampled (the config's ``generation:`` section)."""

    model_config = SECTION

    max_new_tokens: int = Field(
        32,
        gt=0,
        le=MAX_NEW_TOKENS,
        description=f"Tokens an answer may take, tool output included (up to {MAX_NEW_TOKENS}).",
    )
    temperature: float = Field(1.0, ge=0, description="Sampling temperature while learning (0 = greedy).")
    eval_temperature: float = Field(0.0, ge=0, description="Temperature at evaluation (0 = greedy).")
    top_k: int = Field(0, ge=0, description="Top-k sampling cut-off (0 = off).")

    def rollout(self, max_searches: int, evaluation: bool = False) -> GenerationSettings:
        """The settings of a rollout while learning (``temperature``) or evaluating (``eval_temperature``),
        with ``max_searches`` search calls per query (the task's ``max_searches``)."""
        return GenerationSettings(
            max_new_tokens=self.max_new_tokens,
            temperature=self.eval_temperature if evaluation else self.temperature,
            top_k=self.top_k,
            max_searches=max_searches,
        )


def _default(section: type[BaseModel], name: str):
    return section.model_fields[name].default


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """What one rollout call samples with. ``temperature == 0`` means greedy decoding.

    Defaults are the config's (``generation.*``, ``task.max_searches``); a run builds it with
    :meth:`GenerationConfig.rollout`.
    """

    max_new_tokens: int = _default(GenerationConfig, "max_new_tokens")
    temperature: float = _default(GenerationConfig, "temperature")
    top_k: int = _default(GenerationConfig, "top_k")
    max_searches: int = _default(TaskSettings, "max_searches")
