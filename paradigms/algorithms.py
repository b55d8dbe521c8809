"""The algorithm registry: how a weight-changing paradigm turns feedback into updates.

Each entry is a ``Learner`` class carrying its config model as ``Settings`` (its ``algorithm:``
section). ``none`` is the choice of paradigms that never change weights (``frozen``,
``oracle``, ``memory``). The learners themselves live in ``paradigms/rl/``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from tasks.registry import Registry


class AlgorithmSettings(BaseModel):
    """Base of every algorithm's config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    #: Whether this is a real learning rule (everything except ``none``).
    trains: ClassVar[bool] = True


class NoAlgorithm(AlgorithmSettings):
    """No learning rule: the paradigm learns without changing weights, or not at all."""

    name: Literal["none"] = "none"
    trains: ClassVar[bool] = False


class NoLearner:
    """The registry entry for ``none``: nothing to run."""

    Settings = NoAlgorithm


ALGORITHMS: Registry[type] = Registry("algorithm")
ALGORITHMS.add("none", NoLearner)
